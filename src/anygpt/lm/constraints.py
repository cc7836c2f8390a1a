"""Constrained generation: every segment the LM writes is well-formed, whatever its weights.

The state of each sequence is read from its ids at every step (no hidden state, so beam search
and batched sampling work): inside a segment iff the last start marker comes after the last
end marker. Allowed next tokens:
- outside a segment: text tokens, EOS and start markers, but no code and no end marker; a
  start marker only if the remaining token budget can hold a complete minimal segment;
- inside a segment of K codebooks after p codes: only codes of codebook p % K; the end marker
  only on a frame boundary (p % K == 0), after at least one frame, and, for fixed-length
  media (image: 32 codes), exactly when the count is reached; the end marker is forced when
  the budget (max_length) or max_frames would otherwise be exceeded.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from anygpt.layout import ModalityRange, TokenLayout


class SegmentConstraint(LogitsProcessor):
    """A HF LogitsProcessor. scores: FloatTensor [B, V] (V may exceed the tokenizer's size when
    the embedding matrix is padded; those ids are never allowed)."""

    def __init__(self, layout: TokenLayout, *, max_length: int | None = None,
                 max_frames: dict[str, int] | None = None):
        self.layout = layout
        self.max_length = max_length
        self.max_frames = dict(max_frames or {})
        self.ranges = list(layout.ranges.values())
        self.start_ids = torch.tensor([r.start_id for r in self.ranges], dtype=torch.long)
        self.end_ids = torch.tensor([r.end_id for r in self.ranges], dtype=torch.long)
        self._by_start = {r.start_id: r for r in self.ranges}
        outside = torch.ones(layout.vocab_size, dtype=torch.bool)
        for r in self.ranges:
            outside[r.code_offset:r.code_end] = False
            outside[r.end_id] = False
            outside[r.start_id] = False  # start markers are added back subject to the budget
        self._outside = outside

    def _min_segment_length(self, r: ModalityRange) -> int:
        frames = r.spec.frames_per_item or 1
        return 2 + frames * r.spec.num_codebooks

    def allowed(self, input_ids: torch.Tensor, vocab: int) -> torch.Tensor:
        """input_ids LongTensor [B, L] -> BoolTensor [B, vocab] of allowed next tokens."""
        b, length = input_ids.shape
        pos = torch.arange(length).expand(b, length)
        none = torch.full((b,), -1, dtype=torch.long)
        is_start = torch.isin(input_ids, self.start_ids)
        is_end = torch.isin(input_ids, self.end_ids)
        last_start = torch.where(is_start, pos, -1).max(dim=1).values if length else none
        last_end = torch.where(is_end, pos, -1).max(dim=1).values if length else none
        remaining = None if self.max_length is None else self.max_length - length

        allowed = torch.zeros(b, vocab, dtype=torch.bool)
        n_text = min(vocab, self.layout.vocab_size)
        for row in range(b):
            s = int(last_start[row])
            if s > int(last_end[row]):
                r = self._by_start[int(input_ids[row, s])]
                self._allow_inside(allowed[row], r, length - 1 - s, remaining)
            else:
                allowed[row, :n_text] = self._outside[:n_text]
                for r in self.ranges:
                    if remaining is None or remaining >= self._min_segment_length(r):
                        allowed[row, r.start_id] = True
        return allowed

    def _allow_inside(self, row: torch.Tensor, r: ModalityRange, p: int, remaining: int | None) -> None:
        k = r.spec.num_codebooks
        layer, frames = p % k, p // k
        codes_ok = True
        end_ok = layer == 0 and frames >= 1
        if layer == 0:
            fixed = r.spec.frames_per_item
            limit = fixed if fixed is not None else self.max_frames.get(r.name)
            if limit is not None and frames >= limit:
                codes_ok = False
            if fixed is not None and frames < fixed:
                end_ok = False
            if fixed is None and remaining is not None and remaining < k + 1:
                codes_ok = False  # no room for another whole frame plus the end marker
            if not codes_ok:
                end_ok = True
        if codes_ok:
            lo, hi = r.layer_range(layer)
            row[lo:hi] = True
        if end_ok:
            row[r.end_id] = True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = self.allowed(input_ids.cpu(), scores.shape[-1]).to(scores.device)
        return scores.masked_fill(~mask, float("-inf"))
