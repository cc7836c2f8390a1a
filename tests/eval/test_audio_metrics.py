import numpy as np
import pytest
import torch

from anygpt.eval.audio_metrics import log_mel_distance, si_snr


def _signal(n=16000, sr=16000):
    t = np.arange(n) / sr
    return (0.5 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)


def test_si_snr_orders_self_scaled_noisy_and_noise():
    rng = np.random.default_rng(0)
    x = _signal()
    noise = rng.standard_normal(len(x)).astype(np.float32)
    noise *= np.sqrt((x**2).mean() / (noise**2).mean())
    assert si_snr(x, x) > 60
    assert si_snr(x, 0.3 * x) > 60  # scale invariant
    assert si_snr(x, x + noise) == pytest.approx(0.0, abs=0.5)  # equal power -> 0 dB
    assert si_snr(x, x + 0.1 * noise) == pytest.approx(20.0, abs=0.5)
    assert si_snr(x, noise) < -10
    assert si_snr(torch.from_numpy(x)[None], torch.from_numpy(x)[None]) > 60  # [1, S] tensors


def test_log_mel_distance_grows_with_distortion():
    rng = np.random.default_rng(0)
    x = _signal()
    d0 = log_mel_distance(x, x, 16000)
    d1 = log_mel_distance(x, x + 0.01 * rng.standard_normal(len(x)), 16000)
    d2 = log_mel_distance(x, x + 0.1 * rng.standard_normal(len(x)), 16000)
    assert d0 == 0.0 and 0 < d1 < d2


def test_lengths_are_aligned_and_bad_shapes_rejected():
    x = _signal()
    assert si_snr(x, np.concatenate([x, np.zeros(320, np.float32)])) > 60
    with pytest.raises(ValueError):
        si_snr(np.zeros((2, 10)), np.zeros((2, 10)))
