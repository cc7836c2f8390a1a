"""The pieces a multimodal sequence is made of: text, media given as codes, media given as a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch


@dataclass
class TextPart:
    """Text.

    markup False (the default): plain text. Strings that look like the layout's tokens (`<soim>`,
    `<eoh>`, `[Human]`, `<👀12>`, `</s>`) are encoded as the characters they are, so a user who
    types `<soim>` gets those characters, never a real image start (see lm.sequence).
    markup True: text in the release's text form, whose marker and role strings are meant as the
    tokens they name: what templates write around messages, and what `layout.parse_text` reads
    from data files. Equality compares the text only.
    """

    text: str
    markup: bool = field(default=False, compare=False)


@dataclass
class CodesPart:
    """One media item as the codes the LM reads or writes.

    codes: LongTensor [K, T], K = the modality's LM codebooks (image 1, speech 1, music 4),
    T = frames (image: codes per image; audio: frames at the modality's frame rate).
    """

    modality: str
    codes: torch.Tensor
    # set when a lenient parse repaired the segment (e.g. dropped a partial frame)
    repaired: str | None = None

    def __post_init__(self) -> None:
        self.codes = torch.as_tensor(self.codes, dtype=torch.long)
        if self.codes.dim() == 1:
            self.codes = self.codes.unsqueeze(0)
        if self.codes.dim() != 2:
            raise ValueError(f"CodesPart codes must be [K, T], got shape {tuple(self.codes.shape)}")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CodesPart)
            and other.modality == self.modality
            and torch.equal(other.codes, self.codes)
        )


@dataclass
class MediaFilePart:
    """One media item given as a file path, encoded by the modality's tokenizer when needed."""

    modality: str
    path: Path = field(default_factory=Path)

    def __post_init__(self) -> None:
        self.path = Path(self.path)


Part = Union[TextPart, CodesPart, MediaFilePart]


def append_text(parts: list, text: str) -> list:
    """parts + text, merged into a trailing TextPart (so the prompt tokenizes as one string would)."""
    if parts and isinstance(parts[-1], TextPart):
        return parts[:-1] + [TextPart(parts[-1].text + text)]
    return parts + [TextPart(text)]
