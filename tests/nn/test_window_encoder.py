"""The grid image encoder's fast paths compute what the plain layers compute (issue 23's speed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anygpt.nn.query_former import ChannelsLastGELU, QueryTokenizerConfig, WindowEncoder


def test_channels_last_gelu_is_gelu_in_every_layout():
    x = torch.randn(5, 8, 7, 7, generator=torch.Generator().manual_seed(0))
    for t in (x, x.contiguous(memory_format=torch.channels_last), x[:, :, :3], torch.randn(4, 6)):
        y = ChannelsLastGELU()(t)
        assert y.shape == t.shape and torch.allclose(y, F.gelu(t), atol=1e-6)
    y = ChannelsLastGELU()(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)  # the layout the next convolution wants


def test_window_features_equal_the_plain_projection_of_the_flattened_convolutions():
    """forward reads the channels-last features in memory order with the projection's columns
    reordered; the plain way (flatten in channel, row, column order) gives the same features."""
    cfg = QueryTokenizerConfig(encoder="grid", num_queries=36, image_size=64, dim=32, grid_channels=(8, 16))
    enc = WindowEncoder(cfg).eval()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = enc(images)
        plain = enc.norm(enc.proj(enc.convs(enc.windows(images * 2 - 1)).flatten(1))).view(3, 36, -1)
    assert fast.shape == (3, 36, 32) and torch.allclose(fast, plain, atol=1e-5)
    # a change inside one window moves only that window's feature
    edited = images.clone()
    edited[0, :, :8, :8] = 0.0
    with torch.no_grad():
        moved = (enc(edited) - fast).abs().amax(-1)[0] > 1e-6
    assert moved[0] and moved.sum() == 1


def test_fused_inference_convolutions_equal_the_training_layers():
    """Without grad, features() runs oneDNN convolutions with the GELU fused in; with grad (training)
    it runs the modules. Both give the same features, in float32 and under bf16 autocast."""
    cfg = QueryTokenizerConfig(encoder="grid", num_queries=36, image_size=64, dim=32, grid_channels=(8, 16))
    enc = WindowEncoder(cfg).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            trained = enc.features(images).float()
            with torch.inference_mode():
                fused = enc.features(images)
        assert fused.dtype == (torch.bfloat16 if bf16 else torch.float32)
        assert fused.is_contiguous(memory_format=torch.channels_last) and fused.shape == trained.shape == (72, 16, 6, 6)
        assert torch.allclose(fused.float(), trained.detach(), atol=0.03 if bf16 else 1e-5)
