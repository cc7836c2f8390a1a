"""The token layout: the one place that maps media codes to LM ids and to text strings.

The release expands LLaMA-2's 32000-entry vocabulary with added tokens in this order:
`[Human] [MMGPT] <eoh> <eos>`, then for each modality (image, speech, music) all of its code
tokens followed by its start and end markers; the chat checkpoint adds `<-Res-> <-Ins->`.
Every modality's code tokens therefore occupy one contiguous id range, so codes <-> ids is
arithmetic: within a frame, codebook l of a modality with codebook size C is written as
`offset + l * C + code`, and frames follow each other (music: 4 tokens per frame).

`TokenLayout.from_tokenizer` reads the ranges from a real tokenizer and checks them, so a
released checkpoint, our compact models and any new modality go through the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

from anygpt.errors import LayoutError, ModelOutputError, UnknownModalityError
from anygpt.parts import CodesPart, TextPart
from anygpt.token_spec import TokenSpec

USER_ROLE, BOT_ROLE, USER_END, BOT_END = "[Human]", "[MMGPT]", "<eoh>", "<eos>"
RESPONSE_SEP, INSTRUCTION_SEP = "<-Res->", "<-Ins->"
ROLE_TOKENS = (USER_ROLE, BOT_ROLE, USER_END, BOT_END)
CHAT_TOKENS = (RESPONSE_SEP, INSTRUCTION_SEP)


def added_tokens(specs: Sequence[TokenSpec], *, chat: bool = True) -> list[str]:
    """The tokens vocabulary expansion adds, in the release's order."""
    tokens = list(ROLE_TOKENS)
    for spec in specs:
        tokens += spec.code_tokens() + [spec.start, spec.end]
    if chat:
        tokens += list(CHAT_TOKENS)
    return tokens


@dataclass(frozen=True)
class ModalityRange:
    """Where one modality sits in the LM vocabulary."""

    spec: TokenSpec
    code_offset: int  # LM id of written code 0
    start_id: int
    end_id: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def code_end(self) -> int:
        """One past the last code id."""
        return self.code_offset + self.spec.vocab_size

    def layer_range(self, layer: int) -> tuple[int, int]:
        """[lo, hi) LM ids of codebook `layer`."""
        lo = self.code_offset + layer * self.spec.codebook_size
        return lo, lo + self.spec.codebook_size


class TokenLayout:
    """Codes <-> LM ids <-> text strings for a set of modalities.

    ranges: one ModalityRange per modality, in vocabulary order.
    special_ids: ids of the role/turn tokens present (e.g. '[Human]', '<eoh>').
    vocab_size: size of the tokenizer the layout was read from (or planned for).
    """

    def __init__(self, ranges: Sequence[ModalityRange], special_ids: dict[str, int], vocab_size: int):
        self.ranges = {r.name: r for r in ranges}
        self.special_ids = dict(special_ids)
        self.vocab_size = vocab_size
        self._check_disjoint()
        self._by_marker: dict[str, tuple[ModalityRange, bool]] = {}
        for r in ranges:
            self._by_marker[r.spec.start] = (r, True)
            self._by_marker[r.spec.end] = (r, False)
        self._by_prefix = {r.spec.prefix: r for r in ranges}
        # longest prefixes first so that one prefix being a prefix of another cannot misparse
        prefixes = sorted(self._by_prefix, key=len, reverse=True)
        markers = sorted(self._by_marker, key=len, reverse=True)
        self._token_re = re.compile(
            "(" + "|".join(re.escape(m) for m in markers) + ")"
            + "|<(" + "|".join(re.escape(p) for p in prefixes) + r")(\d+)>"
        ) if ranges else None

    # ----------------------------------------------------------------- construction
    @classmethod
    def plan(cls, base_vocab_size: int, specs: Sequence[TokenSpec], *, chat: bool = True) -> "TokenLayout":
        """The layout that expanding a vocabulary of `base_vocab_size` entries (none of the
        added tokens present) produces."""
        ids = {tok: base_vocab_size + i for i, tok in enumerate(added_tokens(specs, chat=chat))}
        ranges = [
            ModalityRange(s, ids[s.code_token(0)], ids[s.start], ids[s.end]) for s in specs
        ]
        specials = {t: ids[t] for t in ROLE_TOKENS + (CHAT_TOKENS if chat else ())}
        return cls(ranges, specials, base_vocab_size + len(ids))

    @classmethod
    def from_tokenizer(cls, tokenizer, specs: Sequence[TokenSpec]) -> "TokenLayout":
        """Read the ranges of `specs` from a HF tokenizer; raise LayoutError if any code token is
        missing or the codes of a modality are not one contiguous id range."""
        vocab = tokenizer.get_vocab()
        ranges = []
        for s in specs:
            missing = [t for t in (s.start, s.end, s.code_token(0), s.code_token(s.vocab_size - 1)) if t not in vocab]
            if missing:
                raise LayoutError(
                    f"tokenizer has no {s.name} token(s) {missing}: its vocabulary was not expanded for "
                    f"{s.name} codes of {s.vocab_size} (use anygpt.lm.expand.add_modality_tokens)"
                )
            first = vocab[s.code_token(0)]
            got = torch.tensor([vocab.get(t, -1) for t in s.code_tokens()])
            if not torch.equal(got, torch.arange(first, first + s.vocab_size)):
                bad = int((got != torch.arange(first, first + s.vocab_size)).nonzero()[0])
                raise LayoutError(
                    f"{s.name} code tokens are not contiguous in the tokenizer: {s.code_token(bad)} has id "
                    f"{int(got[bad])}, expected {first + bad}"
                )
            ranges.append(ModalityRange(s, first, vocab[s.start], vocab[s.end]))
        specials = {t: vocab[t] for t in ROLE_TOKENS + CHAT_TOKENS if t in vocab}
        return cls(ranges, specials, len(tokenizer))

    def _check_disjoint(self) -> None:
        spans = []
        for r in self.ranges.values():
            spans += [(r.code_offset, r.code_end, r.name), (r.start_id, r.start_id + 1, r.spec.start),
                      (r.end_id, r.end_id + 1, r.spec.end)]
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                raise LayoutError(f"token layout overlaps: {an} [{a0},{a1}) and {bn} [{b0},{b1})")

    # ----------------------------------------------------------------- lookups
    def __getitem__(self, modality: str) -> ModalityRange:
        try:
            return self.ranges[modality]
        except KeyError:
            raise UnknownModalityError(
                f"unknown modality {modality!r}; this layout has: {', '.join(self.ranges) or 'none'}"
            ) from None

    @property
    def modalities(self) -> list[str]:
        return list(self.ranges)

    @property
    def specs(self) -> list[TokenSpec]:
        return [r.spec for r in self.ranges.values()]

    def classify(self, token_id: int) -> tuple[str, ModalityRange | None]:
        """('code' | 'start' | 'end' | 'text', range) for one LM id."""
        for r in self.ranges.values():
            if r.code_offset <= token_id < r.code_end:
                return "code", r
            if token_id == r.start_id:
                return "start", r
            if token_id == r.end_id:
                return "end", r
        return "text", None

    # ----------------------------------------------------------------- codes <-> ids
    def codes_to_ids(self, modality: str, codes: torch.Tensor, *, exact_count: bool = True) -> torch.Tensor:
        """codes LongTensor [K, T] (K = the modality's LM codebooks) -> ids LongTensor [T*K],
        frame by frame, codebook l shifted by l * codebook_size. exact_count=False accepts a
        fixed-length modality with another count (a leniently repaired model output)."""
        r = self[modality]
        codes = torch.as_tensor(codes, dtype=torch.long)
        if codes.dim() == 1 and r.spec.num_codebooks == 1:
            codes = codes.unsqueeze(0)
        k, c = r.spec.num_codebooks, r.spec.codebook_size
        if codes.dim() != 2 or codes.shape[0] != k:
            raise LayoutError(f"{modality} codes must have shape [{k}, T], got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= c):
            bad = codes[(codes < 0) | (codes >= c)][0].item()
            raise LayoutError(f"{modality} code {bad} out of range: codes must be in 0..{c - 1}")
        n = r.spec.frames_per_item
        if exact_count and n is not None and codes.shape[1] != n:
            raise LayoutError(f"{modality} items have exactly {n} codes per codebook, got {codes.shape[1]}")
        shift = (torch.arange(k) * c).unsqueeze(1)
        return (codes + shift + r.code_offset).t().reshape(-1)

    def segment_ids(self, modality: str, codes: torch.Tensor) -> torch.Tensor:
        """codes [K, T] -> [start, *codes_to_ids, end] as LongTensor [T*K + 2]."""
        r = self[modality]
        ids = self.codes_to_ids(modality, codes)
        return torch.cat([torch.tensor([r.start_id]), ids, torch.tensor([r.end_id])])

    def ids_to_codes(self, modality: str, ids: torch.Tensor) -> torch.Tensor:
        """Code ids (no markers) LongTensor [N] -> codes [K, N/K]; raises LayoutError unless every
        id is a code of this modality in the right codebook and N is whole frames."""
        r = self[modality]
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        k, c = r.spec.num_codebooks, r.spec.codebook_size
        if ids.numel() % k:
            raise LayoutError(f"{modality}: {ids.numel()} code tokens is not a whole number of {k}-code frames")
        rel = ids - r.code_offset
        if ids.numel() and (rel.min() < 0 or rel.max() >= r.spec.vocab_size):
            bad = ids[(rel < 0) | (rel >= r.spec.vocab_size)][0].item()
            raise LayoutError(f"{modality}: id {bad} is not a {modality} code (ids {r.code_offset}..{r.code_end - 1})")
        frames = rel.reshape(-1, k)
        layer = frames // c
        if not torch.equal(layer, torch.arange(k).expand_as(layer)):
            t, l = (layer != torch.arange(k)).nonzero()[0].tolist()
            raise LayoutError(
                f"{modality}: frame {t} position {l} holds a codebook-{int(layer[t, l])} code; "
                f"codebooks must cycle 0..{k - 1} within each frame"
            )
        return (frames % c).t().contiguous()

    # ----------------------------------------------------------------- codes <-> text
    def codes_to_text(self, modality: str, codes: torch.Tensor, *, exact_count: bool = True) -> str:
        """codes [K, T] -> '<start><p i0><p i1>...<end>' exactly as the release writes it."""
        r = self[modality]
        rel = self.codes_to_ids(modality, codes, exact_count=exact_count) - r.code_offset
        p = r.spec.prefix
        return r.spec.start + "".join(f"<{p}{i}>" for i in rel.tolist()) + r.spec.end

    def text_to_codes(self, modality: str, text: str) -> torch.Tensor:
        """One segment string (with its markers) -> codes [K, T]; strict."""
        parts = self.parse_text(text, strict=True)
        media = [p for p in parts if isinstance(p, CodesPart)]
        rest = "".join(p.text for p in parts if isinstance(p, TextPart)).strip()
        if len(media) != 1 or media[0].modality != modality or rest:
            raise LayoutError(f"expected exactly one {modality} segment, got {text[:80]!r}...")
        return media[0].codes

    # ----------------------------------------------------------------- parsing
    def parse_text(self, text: str, *, strict: bool = True) -> list[TextPart | CodesPart]:
        """A string in the release's text form (a data file line) -> ordered parts. Its text parts
        are markup (TextPart.markup): role and marker strings in them stand for their tokens.

        strict: raise ModelOutputError on any malformed segment (truncated, stray code, partial
        frame, wrong count). Lenient: repair as the release does (keep whole frames, drop what
        does not fit) and note the repair on the part.
        """
        items: list[TextPart | int] = []
        pos = 0
        if self._token_re is not None:
            for m in self._token_re.finditer(text):
                if m.start() > pos:
                    items.append(TextPart(text[pos:m.start()], markup=True))
                if m.group(1):
                    r, is_start = self._by_marker[m.group(1)]
                    items.append(r.start_id if is_start else r.end_id)
                else:
                    r = self._by_prefix[m.group(2)]
                    n = int(m.group(3))
                    if n >= r.spec.vocab_size:
                        if strict:
                            raise ModelOutputError(
                                f"code token {m.group(0)!r} at character {m.start()} is out of range for "
                                f"{r.name} (0..{r.spec.vocab_size - 1})"
                            )
                        items.append(TextPart(m.group(0), markup=True))  # kept as text, like any unknown string
                    else:
                        items.append(r.code_offset + n)
                pos = m.end()
        if pos < len(text):
            items.append(TextPart(text[pos:], markup=True))
        return self._assemble(items, strict)

    def parse_ids(
        self, ids: Iterable[int], decode_text: Callable[[list[int]], str], *, strict: bool = True
    ) -> list[TextPart | CodesPart]:
        """LM ids -> ordered parts; runs of text ids are turned into strings by `decode_text`.
        A run holding a role or chat token id (`<eoh>`, `<-Res->`, ...) is markup, so that the
        parts encode back to the same tokens; other text is plain (characters the model wrote
        that only look like a marker stay characters)."""
        items: list[TextPart | int] = []
        run: list[int] = []
        specials = set(self.special_ids.values())

        def flush() -> None:
            if run:
                items.append(TextPart(decode_text(run), markup=any(i in specials for i in run)))
                run.clear()

        for i in (int(x) for x in ids):
            if self.classify(i)[0] == "text":
                run.append(i)
                continue
            flush()
            items.append(i)
        flush()
        return self._assemble(items, strict)

    def _assemble(self, items: list[TextPart | int], strict: bool) -> list[TextPart | CodesPart]:
        parts: list[TextPart | CodesPart] = []
        cur: ModalityRange | None = None
        seg: list[int] = []

        def add_text(t: TextPart) -> None:
            if not t.text:
                return
            if parts and isinstance(parts[-1], TextPart) and parts[-1].markup == t.markup:
                parts[-1].text += t.text
            else:
                parts.append(TextPart(t.text, markup=t.markup))

        def close(r: ModalityRange, terminated: bool) -> None:
            problems = [] if terminated else [f"{r.name} segment has no {r.spec.end} (truncated)"]
            k = r.spec.num_codebooks
            ids = torch.tensor(seg, dtype=torch.long)
            try:
                codes = self.ids_to_codes(r.name, ids)
            except LayoutError as e:
                problems.append(str(e))
                rel = ids - r.code_offset
                whole = rel[: (rel.numel() // k) * k]  # the release: id mod C, whole frames only
                codes = (whole % r.spec.codebook_size).reshape(-1, k).t().contiguous()
            n = r.spec.frames_per_item
            if n is not None and codes.shape[1] != n:
                problems.append(f"{r.name} segment has {codes.shape[1]} codes, expected exactly {n}")
            if problems and strict:
                raise ModelOutputError(problems[0])
            if codes.shape[1]:  # lenient: a segment without one whole frame is dropped
                parts.append(CodesPart(r.name, codes, repaired="; ".join(problems) or None))

        for it in items:
            if isinstance(it, TextPart):
                if cur is None:
                    add_text(it)
                elif strict:
                    raise ModelOutputError(f"text {it.text[:40]!r} inside a {cur.name} segment")
                continue  # lenient: stray text inside a segment is dropped
            kind, r = self.classify(it)
            if cur is None:
                if kind == "start":
                    cur, seg = r, []
                elif strict:
                    what = "code" if kind == "code" else f"end marker {r.spec.end}"
                    raise ModelOutputError(f"stray {r.name} {what} outside a {r.name} segment")
            elif kind == "code" and r is cur:
                seg.append(it)
            elif kind == "end" and r is cur:
                close(cur, True)
                cur = None
            elif strict:
                raise ModelOutputError(f"{kind} token of {r.name} inside a {cur.name} segment")
            elif kind == "start":  # lenient: a new segment closes the open one
                close(cur, False)
                cur, seg = r, []
        if cur is not None:
            if strict:
                raise ModelOutputError(f"{cur.name} segment has no {cur.spec.end} (truncated)")
            close(cur, False)
        return parts
