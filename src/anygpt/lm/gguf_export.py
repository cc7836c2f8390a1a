"""A LLaMA (transformers' names: PlainLlama or LlamaForCausalLM) written as a GGUF file that
llama.cpp runs, with no text vocabulary inside: anygpt feeds token ids and reads logits, and
the vocabulary (text + modality codes) stays ours.

    path = export_gguf(lm, "decoder.gguf")                   # fp32 weights
    path = export_gguf(lm, "decoder.q8_0.gguf", quantize="q8_0")

Facts used (llama.cpp's llama architecture): tensor names token_embd, blk.N.{attn_norm,
attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm,
output; "tokenizer.ggml.model" = "no_vocab" with "llama.vocab_size" gives a model without a
tokenizer. llama.cpp applies RoPE to adjacent pairs of a head's dimensions, transformers'
LLaMA to its two halves, so the rows of q and k are interleaved back (the inverse of the
permutation applied when Meta's checkpoints were converted to transformers' layout).
Matrices are quantized only when 2-D with rows that fill Q8_0's blocks of 32; norms stay fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from anygpt.errors import AnyGPTError
from anygpt.files import atomic_path

QUANTS = (None, "q8_0")


def halves_to_pairs(w: torch.Tensor, heads: int) -> torch.Tensor:
    """q or k projection weight [heads * D, d], rows per head in transformers' order (first
    halves, then second halves of the rotary pairs) -> llama.cpp's order (pairs adjacent)."""
    out, d_in = w.shape
    d = out // heads
    return w.reshape(heads, 2, d // 2, d_in).transpose(1, 2).reshape(out, d_in)


def export_gguf(lm, path: str | Path, *, quantize: str | None = None) -> Path:
    """Write lm as GGUF to path (a temporary file, then renamed) -> path. quantize: None
    (fp32) or "q8_0" (8-bit blocks of 32 with one scale each: llama.cpp's int8)."""
    import gguf

    if quantize not in QUANTS:
        raise AnyGPTError(f"quantize={quantize!r}: the GGUF export knows {', '.join(map(str, QUANTS))}")
    cfg = lm.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    state = {k: v.detach().to(torch.float32).cpu() for k, v in lm.state_dict().items()}
    tensors = {"token_embd.weight": state["model.embed_tokens.weight"],
               "output_norm.weight": state["model.norm.weight"],
               "output.weight": state["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        src = f"model.layers.{i}."
        tensors.update({
            f"blk.{i}.attn_norm.weight": state[src + "input_layernorm.weight"],
            f"blk.{i}.attn_q.weight": halves_to_pairs(state[src + "self_attn.q_proj.weight"], heads),
            f"blk.{i}.attn_k.weight": halves_to_pairs(state[src + "self_attn.k_proj.weight"], kv_heads),
            f"blk.{i}.attn_v.weight": state[src + "self_attn.v_proj.weight"],
            f"blk.{i}.attn_output.weight": state[src + "self_attn.o_proj.weight"],
            f"blk.{i}.ffn_norm.weight": state[src + "post_attention_layernorm.weight"],
            f"blk.{i}.ffn_gate.weight": state[src + "mlp.gate_proj.weight"],
            f"blk.{i}.ffn_up.weight": state[src + "mlp.up_proj.weight"],
            f"blk.{i}.ffn_down.weight": state[src + "mlp.down_proj.weight"],
        })
    path = Path(path)
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), "llama")
        w.add_name("anygpt decoder")
        w.add_context_length(int(cfg.max_position_embeddings))
        w.add_embedding_length(int(cfg.hidden_size))
        w.add_block_count(int(cfg.num_hidden_layers))
        w.add_feed_forward_length(int(cfg.intermediate_size))
        w.add_head_count(heads)
        w.add_head_count_kv(kv_heads)
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_rope_dimension_count(head_dim)
        w.add_rope_freq_base(float(getattr(cfg, "rope_theta", 10000.0)))
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_vocab_size(int(state["lm_head.weight"].shape[0]))
        w.add_tokenizer_model("no_vocab")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
        for name, t in tensors.items():
            data = t.contiguous().numpy().astype(np.float32)
            if quantize == "q8_0" and data.ndim == 2 and data.shape[1] % 32 == 0:
                w.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                             raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                w.add_tensor(name, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path
