"""Shared pieces of the audio tokenizers (music, speech; released and compact).

Audio batches are FloatTensor [B, C, S] in [-1, 1]. `to_mono` mixes channels down,
`AudioTokenizerBase.prepare` resamples (soxr), and `chunked_encode` / `chunked_decode` run a
model on windows with overlapping context so input of any length works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from anygpt.errors import MediaError
from anygpt.media_io import load_audio, save_audio
from anygpt.modalities.base import ModalityTokenizer


def to_mono(media: torch.Tensor) -> torch.Tensor:
    """[B, C, S] or [B, S] or [S] -> FloatTensor [B, 1, S] (channels averaged)."""
    if not torch.is_tensor(media):
        media = torch.as_tensor(media)
    x = media.float()
    if x.dim() == 1:
        x = x[None, None]
    elif x.dim() == 2:
        x = x[:, None]
    if x.dim() != 3:
        raise MediaError(f"audio batch must be [B, C, S], got shape {tuple(media.shape)}")
    if x.shape[-1] == 0:
        raise MediaError("audio has no samples")
    if not torch.isfinite(x).all():
        raise MediaError("audio contains NaN or infinite samples")
    return x.mean(dim=1, keepdim=True) if x.shape[1] != 1 else x


def chunked_encode(encode: Callable[[torch.Tensor], torch.Tensor], wav: torch.Tensor, hop: int,
                   window: int, context: int) -> torch.Tensor:
    """Encode wav [B, 1, S] with `encode` ([B, 1, n*hop] -> [B, K, n]) in windows.

    S is padded with zeros to whole frames of `hop`. Input up to `window` samples is one call.
    Longer input: each call sees at most `window` samples, of which `context` samples on each
    side (where the input has them) are there only so the kept frames see their neighbours;
    the codes of the kept middle parts are concatenated. Returns LongTensor [B, K, ceil(S/hop)].
    """
    n_frames = -(-wav.shape[-1] // hop)
    wav = torch.nn.functional.pad(wav, (0, n_frames * hop - wav.shape[-1]))
    win_f, ctx_f = window // hop, context // hop
    if n_frames <= win_f:
        return encode(wav)
    keep_f = win_f - 2 * ctx_f
    if keep_f < 1:
        raise ValueError("window must be longer than twice the context")
    out = []
    for start in range(0, n_frames, keep_f):
        end = min(start + keep_f, n_frames)
        lo, hi = max(0, start - ctx_f), min(n_frames, end + ctx_f)
        codes = encode(wav[..., lo * hop: hi * hop])
        out.append(codes[..., start - lo: start - lo + (end - start)])
    return torch.cat(out, dim=-1)


def chunked_decode(decode: Callable[[torch.Tensor], torch.Tensor], codes: torch.Tensor, hop: int,
                   window_frames: int, context_frames: int) -> torch.Tensor:
    """Decode codes [B, K, T] with `decode` ([B, K, n] -> [B, 1, n*hop]) in windows of frames,
    overlapping by `context_frames` on each side as in `chunked_encode`. -> [B, 1, T*hop]."""
    t = codes.shape[-1]
    if t <= window_frames:
        return decode(codes)
    keep = window_frames - 2 * context_frames
    out = []
    for start in range(0, t, keep):
        end = min(start + keep, t)
        lo, hi = max(0, start - context_frames), min(t, end + context_frames)
        wav = decode(codes[..., lo:hi])
        out.append(wav[..., (start - lo) * hop: (end - lo) * hop])
    return torch.cat(out, dim=-1)


class AudioTokenizerBase(ModalityTokenizer):
    """load/save/prepare for tokenizers of mono audio at `self.sample_rate`."""

    def load(self, path: str | Path) -> torch.Tensor:
        """One audio file -> FloatTensor [1, S] mono at sample_rate (MediaError if unreadable)."""
        return load_audio(path, self.sample_rate)

    def save(self, media: torch.Tensor, path: str | Path) -> Path:
        return save_audio(media, path, self.sample_rate)

    def prepare(self, media: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Any batch [B, C, S] (or [B, S], [S]) at `sample_rate` (default ours) ->
        [B, 1, S'] mono at self.sample_rate."""
        x = to_mono(media)
        if sample_rate is not None and sample_rate != self.sample_rate:
            import numpy as np
            import soxr

            x = torch.from_numpy(np.stack([
                soxr.resample(row[0].numpy(), sample_rate, self.sample_rate, quality="HQ") for row in x
            ]).astype("float32")).unsqueeze(1)
        return x
