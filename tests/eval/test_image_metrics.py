import numpy as np
import pytest
import torch

from anygpt.eval.image_metrics import psnr, ssim


def test_psnr_known_values():
    a = torch.full((3, 16, 16), 0.5)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-3)
    assert psnr(np.zeros((8, 8, 3)), np.ones((8, 8, 3))) == pytest.approx(0.0)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 32, 32)).astype(np.float32))
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = (x + 0.2 * torch.from_numpy(rng.standard_normal((3, 32, 32)).astype(np.float32))).clamp(0, 1)
    s = ssim(x, noisy)
    assert 0 < s < 0.9
    assert ssim(x, 1 - x) < 0
    with pytest.raises(ValueError):
        ssim(x, x[:, :16])
