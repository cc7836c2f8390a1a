"""The modality interface: every tokenizer turns media into codes and codes back into media.

A tokenizer knows nothing of the LM. What the LM needs from it is its `TokenSpec`
(anygpt.token_spec): how many codebooks go to the LM, their size, the marker strings and the code
prefix. The token layout
(anygpt.layout) turns specs into LM id ranges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from anygpt.token_spec import TokenSpec


class ModalityTokenizer(ABC):
    """Media <-> codes for one modality (the audiocraft CompressionModel habit).

    Subclasses set the class or instance attributes below and implement `load`, `encode`
    and `decode`. Audio media are FloatTensor [B, C, S] in [-1, 1] at `sample_rate`;
    images are FloatTensor [B, 3, H, W] in [0, 1] at `image_size`.
    """

    name: str  # modality name, e.g. "speech"
    sample_rate: int | None = None  # audio modalities
    image_size: tuple[int, int] | None = None  # image modalities, (H, W)
    frame_rate: float | None = None  # code frames per second (audio); an image has frames_per_item instead
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

    def encode_lm(self, media: torch.Tensor) -> torch.Tensor:
        """media batch as for `encode` -> the LM-facing codes LongTensor [B, len(lm_codebooks), T].
        A tokenizer that can compute those codebooks alone, more cheaply, overrides it."""
        return self.to_lm(self.encode(media))

    def lm_code_vectors(self) -> torch.Tensor | None:
        """FloatTensor [token_spec.vocab_size, d]: one vector per LM-facing code, alike codes near
        each other (what anygpt.lm.code_init starts a fresh LM's code rows from), or None where
        the tokenizer has none to offer."""
        return None

    def encode_file(self, path: str | Path) -> torch.Tensor:
        """One file -> LM-facing codes LongTensor [len(lm_codebooks), T]."""
        return self.encode_item(self.load(path))

    def encode_item(self, media: torch.Tensor) -> torch.Tensor:
        """One item as `load` returns it ([C, S] or [3, H, W]) -> LM-facing codes LongTensor
        [len(lm_codebooks), T]."""
        with torch.inference_mode():
            return self.encode_lm(media.unsqueeze(0))[0]
