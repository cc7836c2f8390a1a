"""VectorQuantizer / ResidualVectorQuantizer: shapes, straight-through, determinism, learning."""

import pytest
import torch

from anygpt.nn.quantize import ResidualVectorQuantizer, VectorQuantizer, row_argmax


def _clusters(n=512, d=8, k=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    idx = torch.randint(0, k, (n,), generator=g)
    x = centers[idx] + 0.05 * torch.randn(n, d, generator=g)
    return x.t().reshape(1, d, n)  # [B=1, D, T]


@pytest.mark.parametrize("distance", ["l2", "cosine"])
@pytest.mark.parametrize("ema", [True, False])
def test_vq_shapes_and_straight_through(distance, ema):
    vq = VectorQuantizer(32, 6, distance=distance, ema=ema, seed=1)
    x = torch.randn(2, 6, 5, 7, requires_grad=True)  # image-like [B, D, H, W]
    out = vq(x)
    assert out.quantized.shape == x.shape
    assert out.codes.shape == (2, 5, 7) and out.codes.dtype == torch.long
    assert out.loss.dim() == 0 and out.perplexity > 0
    # straight-through: d(sum q)/dx == 1 everywhere
    out.quantized.sum().backward()
    if distance == "l2":
        assert torch.allclose(x.grad, torch.ones_like(x))
    else:
        assert x.grad.abs().sum() > 0


def test_vq_encode_decode_consistent_with_forward():
    vq = VectorQuantizer(16, 4, seed=0).eval()
    x = torch.randn(3, 4, 10)
    out = vq(x)
    assert torch.equal(vq.encode(x), out.codes)
    assert torch.allclose(vq.decode(out.codes), out.quantized, atol=1e-6)
    # a code vector quantizes to itself
    codes = torch.arange(16).reshape(1, 16)
    assert torch.equal(vq.encode(vq.decode(codes)), codes)


def test_vq_codebook_dim_projection():
    vq = VectorQuantizer(16, 12, codebook_dim=4, seed=0)
    x = torch.randn(2, 12, 9)
    out = vq(x)
    assert out.quantized.shape == x.shape and vq.codebook.shape == (16, 4)
    assert vq.decode(out.codes).shape == x.shape


def test_vq_deterministic_with_seed():
    x = _clusters()

    def run(seed):
        vq = VectorQuantizer(16, 8, seed=seed, kmeans_init=True)
        for _ in range(3):
            vq(x)
        return vq.codebook.clone()

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize("ema", [True, False])
def test_vq_learns_clusters(ema):
    """On 16 tight clusters a 32-code codebook (random init) ends up on the centres."""
    x = _clusters()
    vq = VectorQuantizer(32, 8, ema=ema, seed=0, dead_code_threshold=0.5)
    opt = torch.optim.Adam(vq.parameters(), lr=0.05) if not ema else None
    with torch.no_grad():
        first = vq.eval()(x).commit_loss.item()
    vq.train()
    for _ in range(60):
        out = vq(x)
        if opt:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    vq.eval()
    last = vq(x).commit_loss.item()
    assert last < 0.1 * max(first, 1e-3) or last < 0.05
    assert vq(x).perplexity > 8


def test_dead_codes_restarted():
    vq = VectorQuantizer(64, 4, seed=0, dead_code_threshold=1.0)
    with torch.no_grad():
        vq.codebook.fill_(100.0)  # every code far from the data
        vq.embed_sum.fill_(100.0)
        vq.codebook[0] = 0.0
        vq.embed_sum[0] = 0.0
    x = torch.randn(1, 4, 256)
    vq(x)
    vq(x)
    assert (vq.codebook.abs() < 50).all(), "dead codes were not restarted on data"
    assert vq(x).perplexity > 10


def test_rvq_shapes_encode_decode_and_residual_improves():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 64)
    rvq = ResidualVectorQuantizer(4, 32, 8, seed=0, kmeans_init=True)
    for _ in range(10):
        out = rvq(x)
    rvq.eval()
    out = rvq(x)
    assert out.codes.shape == (2, 4, 64) and out.perplexities.shape == (4,)
    codes = rvq.encode(x)
    assert torch.equal(codes, out.codes)
    rec = rvq.decode(codes)
    assert rec.shape == x.shape
    assert torch.allclose(rec, out.quantized, atol=1e-5)
    errs = [(x - rvq.decode(codes[:, :k])).pow(2).mean().item() for k in range(1, 5)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert rvq.encode(x, n_q=2).shape == (2, 2, 64)
    with pytest.raises(ValueError):
        rvq.encode(x, n_q=5)


def test_rvq_gradient_reaches_input_and_dropout():
    rvq = ResidualVectorQuantizer(3, 16, 4, seed=0, quantizer_dropout=1.0)
    x = torch.randn(1, 4, 20, requires_grad=True)
    ks = {rvq(x).codes.shape[1] for _ in range(20)}
    assert ks <= {1, 2, 3} and len(ks) > 1
    rvq.quantizer_dropout = 0.0
    out = rvq(x)
    (out.quantized.sum() + out.loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bf16_autocast_runs_in_float32():
    vq = VectorQuantizer(8, 4, seed=0)
    x = torch.randn(1, 4, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(x)
    assert out.codes.shape == (1, 10)
    assert vq.codebook.dtype == torch.float32


def test_row_argmax_is_argmax_with_ties_and_odd_widths():
    g = torch.Generator().manual_seed(0)
    for c in (1024, 96, 33, 16):
        scores = torch.randn(300, c, generator=g).round(decimals=1)  # many ties, also across blocks
        scores[0] = 1.0  # a whole row tied: the first column
        scores[1, 5], scores[1, c - 1] = 9.0, 9.0
        assert torch.equal(row_argmax(scores), scores.argmax(-1)), c
    assert row_argmax(scores)[0] == 0 and row_argmax(scores)[1] == 5
