"""Parts <-> LM ids: text through the LM's tokenizer, media codes through the layout's arithmetic.

Adjacent text parts are tokenized as one string with no special tokens added. With a HF
tokenizer this gives the same ids as tokenizing the whole rendered string, because added tokens
(markers, codes, roles) are split out before any text normalisation; tests check that equality.

Text cannot forge structure. HF tokenizers turn any occurrence of an added token's string into
that token, so a user typing `<soim>` or `<eoh>` would put a real image start or turn end into
the prompt (the release does). Here only markup text (TextPart.markup: what templates write,
the release's text form read from data files) may name tokens; in plain text such a string is
escaped: encoded as its characters, as the tokenizer encodes any other text. Plain text holding
no token string is encoded exactly as before.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import torch

from anygpt.errors import AnyGPTError
from anygpt.layout import TokenLayout
from anygpt.parts import CodesPart, MediaFilePart, Part, TextPart

MediaEncoder = Callable[[MediaFilePart], CodesPart]


class SequenceEncoder:
    """Turns lists of parts into LM ids and back.

    tokenizer: a HF tokenizer expanded with the layout's tokens.
    encode_media: called for MediaFilePart (file -> codes); None if only codes are used.
    The tokenizer's added tokens are read at the first encode: make a new encoder after adding more.
    """

    def __init__(self, tokenizer, layout: TokenLayout, encode_media: MediaEncoder | None = None):
        self.tokenizer = tokenizer
        self.layout = layout
        self.encode_media = encode_media
        self._token_strings: tuple[re.Pattern, frozenset[str]] | None = None

    # ----------------------------------------------------------------- text
    def text_ids(self, text: str) -> list[int]:
        """Markup text -> ids: token strings in it become their tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def plain_text_ids(self, text: str) -> list[int]:
        """Plain text -> ids: every token string in it is encoded as characters (escaped)."""
        return self._run_ids([TextPart(text)])

    def _token_pattern(self) -> tuple[re.Pattern, frozenset[str]]:
        """A regex that finds the strings the tokenizer would turn into added tokens (longest
        first, as the tokenizer matches them), and the set of those strings."""
        # built once: reading a fast tokenizer's added vocabulary (or even len(tokenizer)) costs
        # tens of milliseconds per call with thousands of added tokens (SmolLM2 + the release's)
        if self._token_strings is None:
            added = frozenset(self.tokenizer.get_added_vocab())
            code = re.compile("<(?:" + "|".join(re.escape(s.prefix) for s in self.layout.specs) + r")\d+>") \
                if self.layout.specs else None
            others = sorted((t for t in added if not (code and code.fullmatch(t))), key=len, reverse=True)
            alternatives = [re.escape(t) for t in others] + ([code.pattern] if code else [])
            pattern = re.compile("|".join(alternatives)) if alternatives else re.compile(r"(?!)")
            self._token_strings = (pattern, added)
        return self._token_strings

    def _run_ids(self, run: Sequence[TextPart]) -> list[int]:
        """Adjacent text parts -> ids of their concatenation; token strings that touch plain text
        are escaped, those inside markup text are tokens."""
        text = "".join(p.text for p in run)
        if not text:
            return []
        pattern, added = self._token_pattern()
        plain = []  # [start, end) character spans of plain text
        pos = 0
        for p in run:
            if not p.markup and p.text:
                plain.append((pos, pos + len(p.text)))
            pos += len(p.text)
        forged = [m for m in pattern.finditer(text) if m.group(0) in added
                  and any(a < m.end() and m.start() < b for a, b in plain)]
        if not forged:
            return self.text_ids(text)
        ids, pos = [], 0
        for m in forged:
            ids += self.text_ids(text[pos:m.start()]) + self._literal_ids(m.group(0))
            pos = m.end()
        return ids + self.text_ids(text[pos:])

    def _literal_ids(self, token_string: str) -> list[int]:
        """The ids of a token's string read as characters, not as the token."""
        if not getattr(self.tokenizer, "is_fast", False):  # slow tokenizers can skip added tokens
            return self.tokenizer(token_string, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        # fast: its first character alone, then the rest (no token string starts inside it here,
        # or it is escaped in turn)
        return self.text_ids(token_string[0]) + self.plain_text_ids(token_string[1:])

    # ----------------------------------------------------------------- parts
    def encode(self, parts: Sequence[Part], *, bos: bool = False, eos: bool = False) -> torch.Tensor:
        """parts -> LongTensor [N]. bos/eos add the LM's own begin/end-of-sequence ids."""
        segments = self.encode_segments([(p, True) for p in parts], bos=bos, eos=eos)
        return torch.cat([ids for ids, _ in segments]) if segments else torch.zeros(0, dtype=torch.long)

    def encode_segments(
        self, items: Sequence[tuple[Part, bool]], *, bos: bool = False, eos: bool = False
    ) -> list[tuple[torch.Tensor, bool]]:
        """[(part, flag)] -> [(ids LongTensor [n], flag)], e.g. to build loss masks from a chat
        template's assistant flags. Adjacent text parts of one flag are tokenized together. bos
        carries the first item's flag, eos the last's."""
        out: list[tuple[torch.Tensor, bool]] = []
        if bos and self.tokenizer.bos_token_id is not None:
            out.append((torch.tensor([self.tokenizer.bos_token_id]), items[0][1] if items else False))
        run: list[TextPart] = []
        run_flag = False
        for part, flag in items:
            if isinstance(part, TextPart) and (not run or flag == run_flag):
                run.append(part)
                run_flag = flag
                continue
            if run:
                out.append((torch.tensor(self._run_ids(run), dtype=torch.long), run_flag))
                run = []
            if isinstance(part, TextPart):
                run, run_flag = [part], flag
            else:
                out.append((self.part_ids(part), flag))
        if run:
            out.append((torch.tensor(self._run_ids(run), dtype=torch.long), run_flag))
        if eos and self.tokenizer.eos_token_id is not None:
            out.append((torch.tensor([self.tokenizer.eos_token_id]), items[-1][1] if items else False))
        return out

    def part_ids(self, part: Part) -> torch.Tensor:
        if isinstance(part, TextPart):
            return torch.tensor(self._run_ids([part]), dtype=torch.long)
        if isinstance(part, MediaFilePart):
            if self.encode_media is None:
                raise AnyGPTError(f"{part.path}: no {part.modality} tokenizer is loaded to encode this file")
            part = self.encode_media(part)
        if isinstance(part, CodesPart):
            return self.layout.segment_ids(part.modality, part.codes)
        raise TypeError(f"not a part: {part!r}")

    def decode(self, ids: torch.Tensor | Sequence[int], *, strict: bool = True) -> list[TextPart | CodesPart]:
        """LM ids -> parts (see TokenLayout.parse_ids); the LM's bos/eos/pad ids are dropped."""
        drop = {self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        seq = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids) if int(i) not in drop]
        return self.layout.parse_ids(seq, lambda run: self.tokenizer.decode(run), strict=strict)

