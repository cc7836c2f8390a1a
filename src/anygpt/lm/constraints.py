"""Constrained generation: every segment the LM writes is well-formed, whatever its weights.

Allowed next tokens, for one sequence:
- outside a segment: text tokens, EOS and start markers, but no code and no end marker; a
  start marker only if the remaining token budget can hold a complete minimal segment;
- inside a segment of K codebooks after p codes: only codes of codebook p % K; the end marker
  only on a frame boundary (p % K == 0), after at least one frame, and, for fixed-length
  media (image: 32 codes), exactly when the count is reached; the end marker is forced when
  the budget (max_length) or max_frames would otherwise be exceeded; max_frames 0 for a
  modality forbids its start marker (a text-only reply: every modality at 0).

The state of a row is (segment: -1 outside or the modality's index, tokens p written since its
start marker, tokens left in the budget). `SegmentState` keeps it as tensors over the batch and updates it in O(1)
per step from the token just chosen (the engine's path: no rescan of the ids, no Python loop
over rows). Every state falls into one of a few classes (outside with a subset of start markers
affordable; inside modality r at codebook l with codes and/or the end marker allowed), and
`SegmentTables` holds one allowed-token row per class, so masking a step is one row gather.
`SegmentConstraint` is the HF `LogitsProcessor` adapter: it reads the same state from the ids
(vectorised over rows, so beam search's reordering is fine) and masks with the same tables.
"""

from __future__ import annotations

import torch

from anygpt.layout import TokenLayout

NO_LIMIT = 1 << 30  # "no max_frames" in the per-row limit tensors


class SegmentTables:
    """Per-layout constants of the constraint, for an LM of `vocab` logits (>= the layout's size;
    ids past the layout are never allowed).

    allowed: BoolTensor [S, vocab], one row per state class: rows 0 .. 2^R - 1 are "outside,
    start markers of the modalities in bit set i affordable"; then per modality r and codebook l
    three rows: codes of l only, codes of l or the end marker, the end marker only.

    blocked: FloatTensor [S + 1, vocab], 0 where `allowed`, -inf elsewhere, and a last row of
    zeros (`free_class`: a row the constraint does not apply to). Adding a gathered row to the
    logits masks them; on a batch that is several times cheaper than a boolean fill."""

    def __init__(self, layout: TokenLayout, vocab: int, device: torch.device | str = "cpu"):
        self.layout = layout
        self.vocab = vocab
        ranges = list(layout.ranges.values())
        self.ranges = ranges
        r_count = len(ranges)
        n_text = min(vocab, layout.vocab_size)
        outside = torch.zeros(vocab, dtype=torch.bool)
        outside[:n_text] = True
        for r in ranges:
            outside[r.code_offset:r.code_end] = False
            outside[[r.start_id, r.end_id]] = False
        rows = []
        for subset in range(1 << r_count):
            row = outside.clone()
            for i, r in enumerate(ranges):
                if subset >> i & 1:
                    row[r.start_id] = True
            rows.append(row)
        base = []
        for r in ranges:
            base.append(len(rows))
            for layer in range(r.spec.num_codebooks):
                codes = torch.zeros(vocab, dtype=torch.bool)
                lo, hi = r.layer_range(layer)
                codes[lo:hi] = True
                end = torch.zeros(vocab, dtype=torch.bool)
                end[r.end_id] = True
                rows += [codes, codes | end, end]
        self.allowed = torch.stack(rows).to(device)
        self.free_class = len(rows)
        self.blocked = torch.zeros(len(rows) + 1, vocab, device=device)
        self.blocked[:-1].masked_fill_(~self.allowed, float("-inf"))
        self.outside_classes = 1 << r_count
        long = dict(dtype=torch.long, device=device)
        self.base = torch.tensor(base, **long)  # [R] first class row of each modality
        self.codebooks = torch.tensor([r.spec.num_codebooks for r in ranges], **long)  # [R]
        self.fixed = torch.tensor([r.spec.frames_per_item or 0 for r in ranges], **long)  # [R], 0: variable
        self.min_length = torch.tensor([2 + (r.spec.frames_per_item or 1) * r.spec.num_codebooks
                                        for r in ranges], **long)  # [R] shortest whole segment
        self.bits = 1 << torch.arange(r_count, **long)  # [R]
        # token -> modality index of the start marker it is (-1: none); is it an end marker
        self.start_of = torch.full((vocab,), -1, **long)
        self.is_end = torch.zeros(vocab, dtype=torch.bool, device=device)
        for i, r in enumerate(ranges):
            self.start_of[r.start_id] = i
            self.is_end[r.end_id] = True

    def head_groups(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Groups of ids that cover every class's allowed set: group 0 for the classes outside a
        segment, then one per (modality, codebook) -> (ids LongTensor [n] per group, group of
        each class LongTensor [S]). A step whose rows all fall in one group needs only those
        logits."""
        dev = self.allowed.device
        groups = [self.allowed[: self.outside_classes].any(dim=0).nonzero().flatten()]
        of_class = [0] * self.outside_classes
        for r in self.ranges:
            for _ in range(r.spec.num_codebooks):
                rows = len(of_class)
                groups.append(self.allowed[rows: rows + 3].any(dim=0).nonzero().flatten())
                of_class += [len(groups) - 1] * 3
        return groups, torch.tensor(of_class, dtype=torch.long, device=dev)

    def frame_limits(self, max_frames: list[dict[str, int]] | dict[str, int] | None, batch: int) -> torch.Tensor:
        """Per-row max_frames (one dict, or one per row) -> LongTensor [B, R] (NO_LIMIT where unset)."""
        rows = max_frames if isinstance(max_frames, list) else [max_frames or {}] * batch
        names = [r.name for r in self.ranges]
        for row in rows:
            unknown = set(row or {}) - set(names)
            if unknown:
                raise ValueError(f"max_frames names unknown modalities {sorted(unknown)}; this layout has {names}")
        return torch.tensor([[int((row or {}).get(n, NO_LIMIT)) for n in names] for row in rows],
                            dtype=torch.long, device=self.base.device).reshape(batch, len(names))

    def classes(self, seg: torch.Tensor, pos: torch.Tensor, remaining: torch.Tensor | None,
                limits: torch.Tensor) -> torch.Tensor:
        """State -> class index LongTensor [B] into `allowed`. seg [B] (-1 outside), pos [B]
        codes written in the open segment, remaining [B] tokens left (None: no budget),
        limits [B, R] max frames per modality."""
        inside = seg >= 0
        r = seg.clamp(min=0)
        startable = limits > 0  # [B, R]; max_frames 0: no segment of that modality
        if remaining is None:
            room = torch.ones_like(inside)
        else:
            startable = startable & (remaining[:, None] >= self.min_length)
            room = remaining >= self.codebooks[r] + 1  # another whole frame plus the end marker
        subset = (startable * self.bits).sum(dim=1)
        k = self.codebooks[r]
        layer, frames = pos % k, pos // k
        fixed = self.fixed[r]
        limit = torch.where(fixed > 0, fixed, limits.gather(1, r[:, None])[:, 0])
        boundary = layer == 0
        codes_ok = ~(boundary & ((frames >= limit) | ((fixed == 0) & ~room)))
        end_ok = boundary & (frames >= 1) & ~((fixed > 0) & (frames < fixed))
        end_ok = end_ok | ~codes_ok
        case = torch.where(codes_ok, end_ok.long(), 2)  # 0 codes, 1 codes or end, 2 end
        return torch.where(inside, self.base[r] + layer * 3 + case, subset)

    def state_from_ids(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids LongTensor [B, L] (the text so far) -> (seg [B], pos [B]): vectorised rescan."""
        b, length = ids.shape
        if length == 0:
            zero = torch.zeros(b, dtype=torch.long, device=ids.device)
            return zero - 1, zero
        ids = ids.clamp(0, self.vocab - 1)
        col = torch.arange(length, device=ids.device).expand(b, length)
        starts = self.start_of[ids]
        last_start = torch.where(starts >= 0, col, -1).max(dim=1).values
        last_end = torch.where(self.is_end[ids], col, -1).max(dim=1).values
        inside = last_start > last_end
        seg = torch.where(inside, starts.gather(1, last_start.clamp(min=0)[:, None])[:, 0], -1)
        pos = torch.where(inside, length - 1 - last_start, 0)
        return seg, pos


class SegmentState:
    """The constraint's per-row state over one batched generation, updated once per step.

    tables: SegmentTables; seg, pos: LongTensor [B] (from the prompt's ids, so a prompt that
    opens a segment, e.g. a forced modality, continues it); budget: LongTensor [B] new tokens
    each row may still write (None: unbounded); limits [B, R] from `frame_limits`."""

    def __init__(self, tables: SegmentTables, prompt_ids: torch.Tensor, budget: torch.Tensor | None,
                 limits: torch.Tensor, *, prompt_mask: torch.Tensor | None = None):
        self.t = tables
        ids = prompt_ids if prompt_mask is None else torch.where(prompt_mask, prompt_ids, 0)
        self.seg, self.pos = tables.state_from_ids(ids.to(tables.base.device))
        self.remaining = None if budget is None else budget.to(tables.base.device).clone()
        self.limits = limits

    def classes(self) -> torch.Tensor:
        """LongTensor [B]: each row's state class (a row of tables.allowed)."""
        return self.t.classes(self.seg, self.pos, self.remaining, self.limits)

    def allowed(self) -> torch.Tensor:
        """BoolTensor [B, vocab] of the tokens each row may write next."""
        return self.t.allowed[self.classes()]

    def mask_(self, logits: torch.Tensor) -> torch.Tensor:
        """logits FloatTensor [B, V] -> the same tensor, disallowed ids set to -inf (in place)."""
        return logits.masked_fill_(~self.allowed(), float("-inf"))

    def advance(self, tokens: torch.Tensor) -> None:
        """tokens LongTensor [B]: the ids just written (any id for finished rows)."""
        tokens = tokens.clamp(0, self.t.vocab - 1)
        start = self.t.start_of[tokens]
        opened = start >= 0
        # p counts every token since the start marker (as a rescan does; with the constraint
        # on, those are all codes of the segment)
        self.pos = torch.where(opened, 0, self.pos + (self.seg >= 0).long())
        self.seg = torch.where(opened, start, torch.where(self.t.is_end[tokens], -1, self.seg))
        if self.remaining is not None:
            self.remaining = self.remaining - 1


class SegmentConstraint:
    """A HF LogitsProcessor (its call signature; no base class, so that importing this module
    does not import transformers). scores: FloatTensor [B, V] (V may exceed the tokenizer's size when
    the embedding matrix is padded; those ids are never allowed)."""

    def __init__(self, layout: TokenLayout, *, max_length: int | None = None,
                 max_frames: dict[str, int] | None = None):
        self.layout = layout
        self.max_length = max_length
        self.max_frames = dict(max_frames or {})
        self._tables: dict[tuple[int, str], SegmentTables] = {}

    def tables(self, vocab: int, device: torch.device | str = "cpu") -> SegmentTables:
        key = (vocab, str(device))
        if key not in self._tables:
            self._tables[key] = SegmentTables(self.layout, vocab, device)
        return self._tables[key]

    def allowed(self, input_ids: torch.Tensor, vocab: int) -> torch.Tensor:
        """input_ids LongTensor [B, L] -> BoolTensor [B, vocab] of allowed next tokens."""
        t = self.tables(vocab, input_ids.device)
        b, length = input_ids.shape
        seg, pos = t.state_from_ids(input_ids)
        remaining = None if self.max_length is None else torch.full((b,), self.max_length - length,
                                                                     dtype=torch.long, device=input_ids.device)
        return t.allowed[t.classes(seg, pos, remaining, t.frame_limits(self.max_frames, b))]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = self.allowed(input_ids, scores.shape[-1])
        return scores.masked_fill(~mask, float("-inf"))
