"""Array conversion shared by the metric modules."""

import numpy as np
import torch


def as_float64(x) -> np.ndarray:
    """A tensor (any device/dtype) or array-like -> float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
