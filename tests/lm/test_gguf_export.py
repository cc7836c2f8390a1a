"""The GGUF export: llama.cpp's names, shapes and keys, and the q/k row order its RoPE needs."""

import gguf
import numpy as np
import pytest
import torch

from anygpt.errors import AnyGPTError
from anygpt.lm.gguf_export import export_gguf, halves_to_pairs
from anygpt.lm.tiny import tiny_llama


def _rope_halves(x: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """transformers' RoPE of one head x [D]: dimension i pairs with i + D/2."""
    d = x.shape[0]
    freq = pos / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = torch.cat([freq.cos(), freq.cos()]), torch.cat([freq.sin(), freq.sin()])
    rotated = torch.cat([-x[d // 2:], x[:d // 2]])
    return x * cos + rotated * sin


def _rope_pairs(x: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """llama.cpp's RoPE of one head x [D]: dimensions 2j and 2j + 1 form a pair."""
    d = x.shape[0]
    freq = pos / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    a, b = x[0::2], x[1::2]
    out = torch.empty_like(x)
    out[0::2], out[1::2] = a * freq.cos() - b * freq.sin(), a * freq.sin() + b * freq.cos()
    return out


def test_reordered_rows_rotate_as_transformers_rotates():
    heads, d, d_in = 3, 8, 5
    w = torch.randn(heads * d, d_in, dtype=torch.float64)
    h = torch.randn(d_in, dtype=torch.float64)
    reordered = halves_to_pairs(w, heads)
    for pos in (0, 3, 17):
        for head in range(heads):
            rows = slice(head * d, (head + 1) * d)
            theirs = _rope_pairs(reordered[rows] @ h, pos)
            ours = _rope_halves(w[rows] @ h, pos)
            # the same vector, its dimensions in llama.cpp's order: attention scores are equal
            assert torch.allclose(theirs, halves_to_pairs(ours[:, None], 1)[:, 0])
    assert torch.equal(reordered.sort(dim=0).values, w.sort(dim=0).values)  # a permutation of the rows


@pytest.mark.parametrize("quantize", [None, "q8_0"])
def test_export_holds_llama_cpp_names_shapes_and_keys(tmp_path, quantize):
    lm = tiny_llama(96, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)
    path = export_gguf(lm, tmp_path / "d.gguf", quantize=quantize)
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 3 + 2 * 9
    assert tuple(tensors["token_embd.weight"].shape) == (64, 96)  # GGUF lists the fastest dimension first
    assert tuple(tensors["blk.1.attn_k.weight"].shape) == (64, 32)
    q8 = gguf.GGMLQuantizationType.Q8_0
    assert (tensors["blk.0.ffn_down.weight"].tensor_type == q8) == (quantize == "q8_0")
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    fields = reader.fields

    def value(key):
        f = fields[key]
        return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]][0]

    assert value("general.architecture") == "llama"
    assert value("tokenizer.ggml.model") == "no_vocab"
    assert int(value("llama.vocab_size")) == 96
    assert int(value("llama.attention.head_count_kv")) == 2
    if quantize is None:  # fp32 tensors hold the weights exactly (v is not reordered)
        v = lm.model.layers[1].self_attn.v_proj.weight.detach().numpy()
        assert np.array_equal(np.asarray(tensors["blk.1.attn_v.weight"].data).reshape(v.shape), v)


def test_unknown_quantization_is_named(tmp_path):
    with pytest.raises(AnyGPTError, match="q4_k"):
        export_gguf(tiny_llama(96, hidden=64, layers=1), tmp_path / "x.gguf", quantize="q4_k")
    assert not (tmp_path / "x.gguf").exists()
