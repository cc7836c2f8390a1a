"""The pieces a multimodal sequence is made of: text, media given as codes, media given as a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch


@dataclass
class TextPart:
    """Plain text."""

    text: str


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
