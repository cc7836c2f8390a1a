"""Image reconstruction metrics: PSNR and SSIM on images in [0, 1].

Images are FloatTensor / arrays [3, H, W] (channels first, as anygpt.media_io.load_image gives)
or [H, W, 3]; both must have the same shape.
"""

from __future__ import annotations

import numpy as np

from anygpt.eval.arrays import as_float64


def _hwc(x) -> np.ndarray:
    x = as_float64(x)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.transpose(x, (1, 2, 0))
    if x.ndim != 3:
        raise ValueError(f"expected an image [3, H, W] or [H, W, 3], got shape {x.shape}")
    return x


def psnr(ref, est, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical images."""
    r, e = _hwc(ref), _hwc(est)
    if r.shape != e.shape:
        raise ValueError(f"image shapes differ: {r.shape} vs {e.shape}")
    mse = float(np.mean((r - e) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(ref, est, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004, 7x7 window, per channel; 1 for identical)."""
    from skimage.metrics import structural_similarity

    r, e = _hwc(ref), _hwc(est)
    if r.shape != e.shape:
        raise ValueError(f"image shapes differ: {r.shape} vs {e.shape}")
    win = min(7, r.shape[0], r.shape[1])
    win -= (win + 1) % 2  # odd
    return float(structural_similarity(r, e, data_range=data_range, channel_axis=2, win_size=win))
