"""Audio reconstruction metrics: log-mel distance and scale-invariant SNR.

Both take a reference and an estimate as float arrays or tensors ([S] or [1, S]) at the same
sample rate; the longer one is cut to the shorter (codecs may pad by up to a frame).
"""

from __future__ import annotations

import numpy as np

from anygpt.eval.arrays import as_float64


def _mono(x) -> np.ndarray:
    x = as_float64(x)
    if x.ndim == 2:
        if x.shape[0] != 1:
            raise ValueError(f"expected mono audio [S] or [1, S], got shape {x.shape}")
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"expected mono audio [S] or [1, S], got shape {x.shape}")
    return x


def _aligned(ref, est) -> tuple[np.ndarray, np.ndarray]:
    r, e = _mono(ref), _mono(est)
    n = min(len(r), len(e))
    if n == 0:
        raise ValueError("empty audio")
    return r[:n], e[:n]


def si_snr(ref, est, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-noise ratio in dB (higher is better; identical -> very large)."""
    r, e = _aligned(ref, est)
    r = r - r.mean()
    e = e - e.mean()
    target = (e @ r) / (r @ r + eps) * r
    noise = e - target
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def log_mel_spectrogram(x, sample_rate: int, n_mels: int = 80, n_fft: int = 1024,
                        hop_length: int | None = None) -> np.ndarray:
    """log10(mel power + 1e-5): float [n_mels, frames], hop 10 ms unless given."""
    import librosa

    hop = hop_length or sample_rate // 100
    mel = librosa.feature.melspectrogram(y=_mono(x).astype(np.float32), sr=sample_rate, n_fft=n_fft,
                                         hop_length=hop, n_mels=n_mels, power=2.0)
    return np.log10(mel + 1e-5)


def log_mel_distance(ref, est, sample_rate: int, n_mels: int = 80) -> float:
    """Mean absolute difference of log10 mel spectrograms (0 for identical audio)."""
    r, e = _aligned(ref, est)
    return float(np.abs(log_mel_spectrogram(r, sample_rate, n_mels) - log_mel_spectrogram(e, sample_rate, n_mels)).mean())
