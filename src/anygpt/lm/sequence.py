"""Parts <-> LM ids: text through the LM's tokenizer, media codes through the layout's arithmetic.

Text pieces are tokenized one by one with no special tokens added. With a HF tokenizer this
gives the same ids as tokenizing the whole rendered string, because added tokens (markers,
codes, roles) are split out before any text normalisation; tests check that equality.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from anygpt.errors import AnyGPTError
from anygpt.layout import TokenLayout
from anygpt.parts import CodesPart, MediaFilePart, Part, TextPart

MediaEncoder = Callable[[MediaFilePart], CodesPart]


class SequenceCodec:
    """Turns lists of parts into LM ids and back.

    tokenizer: a HF tokenizer expanded with the layout's tokens.
    encode_media: called for MediaFilePart (file -> codes); None if only codes are used.
    """

    def __init__(self, tokenizer, layout: TokenLayout, encode_media: MediaEncoder | None = None):
        self.tokenizer = tokenizer
        self.layout = layout
        self.encode_media = encode_media

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, parts: Sequence[Part], *, bos: bool = False, eos: bool = False) -> torch.Tensor:
        """parts -> LongTensor [N]. bos/eos add the LM's own begin/end-of-sequence ids."""
        segments = self.encode_segments([(p, True) for p in parts], bos=bos, eos=eos)
        return torch.cat([ids for ids, _ in segments]) if segments else torch.zeros(0, dtype=torch.long)

    def encode_segments(
        self, items: Sequence[tuple[Part, bool]], *, bos: bool = False, eos: bool = False
    ) -> list[tuple[torch.Tensor, bool]]:
        """[(part, flag)] -> [(ids LongTensor [n], flag)], e.g. to build loss masks from a chat
        template's assistant flags. bos carries the first item's flag, eos the last's."""
        out: list[tuple[torch.Tensor, bool]] = []
        if bos and self.tokenizer.bos_token_id is not None:
            out.append((torch.tensor([self.tokenizer.bos_token_id]), items[0][1] if items else False))
        for part, flag in items:
            out.append((self.part_ids(part), flag))
        if eos and self.tokenizer.eos_token_id is not None:
            out.append((torch.tensor([self.tokenizer.eos_token_id]), items[-1][1] if items else False))
        return out

    def part_ids(self, part: Part) -> torch.Tensor:
        if isinstance(part, TextPart):
            return torch.tensor(self.text_ids(part.text), dtype=torch.long)
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
