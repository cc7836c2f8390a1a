"""The modality interface: every tokenizer turns media into codes and codes back into media.

A tokenizer knows nothing of the LM. What the LM needs from it is its `TokenSpec`: how many
codebooks go to the LM, their size, the marker strings and the code prefix. The token layout
(anygpt.layout) turns specs into LM id ranges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch


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


class ModalityTokenizer(ABC):
    """Media <-> codes for one modality (the audiocraft CompressionModel habit).

    Subclasses set the class or instance attributes below and implement `load`, `encode`
    and `decode`. Audio media are FloatTensor [B, C, S] in [-1, 1] at `sample_rate`;
    images are FloatTensor [B, 3, H, W] in [0, 1] at `image_size`.
    """

    name: str  # modality name, e.g. "speech"
    sample_rate: int | None = None  # audio modalities
    image_size: tuple[int, int] | None = None  # image modalities, (H, W)
    frame_rate: float  # code frames per second (audio) or per image (image: codes per image)
    num_codebooks: int  # codebooks the tokenizer produces (speech RVQ: 8)
    codebook_size: int
    lm_codebooks: tuple[int, ...] = (0,)  # which of them the LM reads and writes
    file_extensions: tuple[str, ...] = ()

    @property
    @abstractmethod
    def token_spec(self) -> TokenSpec:
        """The spec of the LM-facing codes (len(lm_codebooks) codebooks of codebook_size)."""

    @abstractmethod
    def load(self, path: str | Path) -> torch.Tensor:
        """Read one media file into this tokenizer's input format, one item: [C, S] or [3, H, W].

        Repairs what can be repaired (resample, mix down, convert mode) and raises
        anygpt.errors.MediaError naming the file otherwise.
        """

    @abstractmethod
    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """media: batch as in the class docstring -> codes LongTensor [B, num_codebooks, T]."""

    @abstractmethod
    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """codes LongTensor [B, K, T] -> media batch.

        K may be len(lm_codebooks) only when the tokenizer has a second stage that fills the
        other codebooks (speech: an acoustic model with a voice prompt passed in `context`).
        """

    @abstractmethod
    def save(self, media: torch.Tensor, path: str | Path) -> Path:
        """Write one item ([C, S] or [3, H, W]) to path atomically; return the path written."""

    def to_lm(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, num_codebooks, T] -> the LM-facing codebooks [B, len(lm_codebooks), T]."""
        return codes[:, list(self.lm_codebooks), :]

    def encode_file(self, path: str | Path) -> torch.Tensor:
        """One file -> LM-facing codes LongTensor [len(lm_codebooks), T]."""
        return self.encode_item(self.load(path))

    def encode_item(self, media: torch.Tensor) -> torch.Tensor:
        """One item as `load` returns it ([C, S] or [3, H, W]) -> LM-facing codes LongTensor
        [len(lm_codebooks), T]."""
        with torch.inference_mode():
            return self.to_lm(self.encode(media.unsqueeze(0)))[0]
