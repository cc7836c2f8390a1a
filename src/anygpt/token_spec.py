"""TokenSpec: how one modality's codes are written in the LM vocabulary. The contract between a
modality tokenizer (which states its spec) and the token layout (anygpt.layout, which turns specs
into LM id ranges); a leaf, so both sides import it without importing each other."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TokenSpec:
    """How one modality's codes are written in the LM vocabulary.

    A frame holds one code of each LM codebook; frames are written one after another and inside
    a frame codebook l is written as `code + l * codebook_size` (the release's music layout;
    image and speech are the one-codebook case). So the modality owns
    `codebook_size * num_codebooks` code tokens `<{prefix}{i}>`, plus `start` and `end` markers.
    """

    name: str
    prefix: str
    start: str
    end: str
    codebook_size: int
    num_codebooks: int = 1
    # fixed number of frames per item (image: 32); None for variable-length media
    frames_per_item: int | None = None

    def __post_init__(self) -> None:
        if self.codebook_size < 1 or self.num_codebooks < 1:
            raise ValueError(f"TokenSpec {self.name!r}: codebook_size and num_codebooks must be >= 1")
        if self.frames_per_item is not None and self.frames_per_item < 1:
            raise ValueError(f"TokenSpec {self.name!r}: frames_per_item must be >= 1 or None")

    @property
    def vocab_size(self) -> int:
        """Number of code tokens (markers not included)."""
        return self.codebook_size * self.num_codebooks

    def code_token(self, i: int) -> str:
        """Text form of written id i (0 <= i < vocab_size), e.g. '<👀17>'."""
        return f"<{self.prefix}{i}>"

    def code_tokens(self) -> list[str]:
        return [self.code_token(i) for i in range(self.vocab_size)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenSpec":
        return cls(**d)
