"""anygpt.nn.spectral_codec: the config's derived rates, the trunk's shapes and input checks, the
mel filterbank and the multi-scale mel loss (zero for equal audio, larger for worse audio)."""

from __future__ import annotations

import math

import pytest
import torch

from anygpt.nn.spectral_codec import MultiScaleMelLoss, SpectralCodecConfig, SpectralCodecTrunk, mel_filterbank


def test_config_rates_and_json_round_trip(tmp_path):
    cfg = SpectralCodecConfig(downsample=2)
    assert (cfg.frame_hop, cfg.frame_rate) == (320, 50.0)
    assert SpectralCodecConfig().frame_rate == 25.0
    cfg.save(tmp_path / "c.json")
    assert SpectralCodecConfig.load(tmp_path / "c.json") == cfg
    assert SpectralCodecConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg  # a newer file's extra keys


def test_trunk_encodes_to_the_code_rate_and_checks_its_input():
    cfg = SpectralCodecConfig(enc_dim=16, enc_blocks=1, latent_dim=8)
    trunk = SpectralCodecTrunk(cfg)
    wav = torch.randn(2, 1, cfg.frame_hop * 5)
    assert trunk.spectrogram(wav).shape == (2, cfg.n_fft // 2 + 1, 5 * cfg.downsample)
    assert trunk.encode_latent(wav).shape == (2, 8, 5)
    assert trunk.encode_latent(wav[:, 0]).shape == (2, 8, 5)  # [B, S] is taken as mono
    with pytest.raises(ValueError, match="not a positive multiple of the frame hop 640"):
        trunk.encode_latent(torch.randn(1, 1, 1000))
    with pytest.raises(ValueError, match=r"expected mono wav \[B, 1, S\]"):
        trunk.encode_latent(torch.randn(1, 2, 640))
    again = SpectralCodecTrunk(cfg)  # seeded: the same config, the same weights
    assert all(torch.equal(a, b) for a, b in zip(trunk.state_dict().values(), again.state_dict().values()))


def test_mel_filterbank_triangles():
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and (fb >= 0).all()
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all()  # centres rise with the filter index
    assert (fb > 0).sum(1).min() >= 1  # no empty filter at this resolution
    low = mel_filterbank(16000, 512, 40, fmax=4000)
    assert low[:, 129:].sum() == 0  # nothing above fmax (bin 128 is 4 kHz)


def test_multi_scale_mel_loss_orders_distortions():
    loss = MultiScaleMelLoss(16000, scales=(256, 512), n_mels=(32, 64))
    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    ref = (torch.sin(2 * math.pi * 440 * t) + 0.3 * torch.randn(8000, generator=g)).reshape(1, 1, -1)
    mel, sc = loss(ref, ref)
    assert mel.item() == 0 and sc.item() == 0
    slightly = loss(ref + 0.01 * torch.randn(ref.shape, generator=g), ref)
    other = loss((torch.sin(2 * math.pi * 880 * t) + 0.3 * torch.randn(8000, generator=g)).reshape(1, 1, -1), ref)
    assert 0 < slightly[0] < other[0] and 0 < slightly[1] < other[1]
