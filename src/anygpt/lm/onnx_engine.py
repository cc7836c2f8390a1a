"""A C++ decode path: the LLaMA decoder exported to ONNX once, run by ONNX Runtime step by step.

    engine = OnnxEngine(lm, layout, tokenizer=tok)     # exports on first use, cached on disk
    engine.generate([Request(prompt_ids, settings, stop_ids=[2])])

Everything but the forward pass is anygpt.lm.engine.Engine's: the batch loop, stop ids and
strings, streaming, cancellation and the segment constraint (a token mask on the logits in
Python, anygpt.lm.constraints), so every segment stays well-formed. Only the network runs in
ONNX Runtime: one graph for prefill and decode, its KV cache kept by the caller.

Why ONNX Runtime: one session call replaces some hundred torch dispatches a step, it keeps a
per-step hook on the logits (the constraint runs unchanged), and its int8 MatMuls read a
quarter of the bytes. CTranslate2 has no per-step logits hook (the constraint would have to
run as phases) and llama.cpp needs a source build. Measured (benchmarks/bench_generation.py,
figures in docs/generation.md): fp32 about 1.3x the torch engine, int8 the fastest decoder.

The graph (`DecoderStep`), inputs and outputs:
- ids, positions LongTensor [B, T]; mask FloatTensor [B, 1, T, P + T] (0 or the float minimum,
  added to the attention scores: left padding and causality are the caller's);
- past_k{i}, past_v{i} FloatTensor [P, B, KV, D] per layer (time first, so the caller's
  preallocated cache[:P] is contiguous and goes in without a copy);
- -> logits FloatTensor [B, V] of the last column, new_k{i}, new_v{i} FloatTensor [T, B, KV, D].

Exports live in a cache folder (ANYGPT_CACHE, default ~/.cache/anygpt, under onnx/), named by a
hash of the weights and config, written to a temporary file then renamed: never in git.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anygpt.errors import AnyGPTError, BackendUnavailable
from anygpt.files import atomic_path
from anygpt.layout import TokenLayout
from anygpt.lm.engine import Engine, EngineError

EXTRA = "onnx"  # pip install 'anygpt[onnx]'
FORMAT = 1  # bump when DecoderStep's inputs, outputs or math change: old exports are not reused


def import_onnxruntime():
    """-> the onnxruntime module, or BackendUnavailable naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable(f"engine 'onnx' needs onnxruntime: pip install 'anygpt[{EXTRA}]'") from None
    return onnxruntime


def cache_root(kind: str = "onnx") -> Path:
    """Where a backend's exports of `kind` ("onnx", "gguf") live: ANYGPT_CACHE (default
    ~/.cache/anygpt)/kind."""
    return Path(os.environ.get("ANYGPT_CACHE", Path.home() / ".cache" / "anygpt")) / kind


def check_supported(lm, backend: str = "onnx") -> None:
    """BackendUnavailable unless lm is a bias-free SiLU LLaMA with plain RoPE (what DecoderStep
    computes, and what the GGUF export writes)."""
    cfg = lm.config
    why = None
    if getattr(cfg, "model_type", None) != "llama":
        why = f"it is a {getattr(cfg, 'model_type', type(lm).__name__)!r} model, not LLaMA"
    elif getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        why = "it has attention or MLP biases"
    elif getattr(cfg, "hidden_act", "silu") != "silu":
        why = f"its hidden_act is {cfg.hidden_act!r}, not 'silu'"
    elif (getattr(cfg, "rope_scaling", None) or {}).get("rope_type", "default") != "default":
        why = "it uses RoPE scaling"
    if why:
        raise BackendUnavailable(f"engine {backend!r} cannot hold this model: {why} (use engine 'engine' or 'hf')")


class DecoderStep(nn.Module):
    """LlamaForCausalLM's math as one exportable step (see the module docstring for shapes):
    RMSNorm in fp32, RoPE from the model's inv_freq, attention with an additive mask, SiLU MLP.
    Weights are copied out of `lm` as fused fp32 projections."""

    def __init__(self, lm):
        super().__init__()
        cfg = lm.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = float(cfg.rms_norm_eps)
        self.inter = cfg.intermediate_size
        body = lm.model
        f32 = dict(dtype=torch.float32)
        self.embed = nn.Parameter(body.embed_tokens.weight.detach().to(**f32).clone(), requires_grad=False)
        self.norm = nn.Parameter(body.norm.weight.detach().to(**f32).clone(), requires_grad=False)
        self.head = nn.Parameter(lm.lm_head.weight.detach().to(**f32).clone(), requires_grad=False)
        self.ln1, self.ln2, self.qkv, self.o, self.gate_up, self.down = (nn.ParameterList() for _ in range(6))
        for layer in body.layers:
            a, m = layer.self_attn, layer.mlp

            def cat(*ws):
                return nn.Parameter(torch.cat([w.detach() for w in ws]).to(**f32), requires_grad=False)

            self.ln1.append(cat(layer.input_layernorm.weight))
            self.ln2.append(cat(layer.post_attention_layernorm.weight))
            self.qkv.append(cat(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight))
            self.o.append(cat(a.o_proj.weight))
            self.gate_up.append(cat(m.gate_proj.weight, m.up_proj.weight))
            self.down.append(cat(m.down_proj.weight))
        rot = body.rotary_emb
        scale = float(getattr(rot, "attention_scaling", 1.0))
        n = int(cfg.max_position_embeddings)
        freqs = torch.arange(n, dtype=torch.float32)[:, None] * rot.inv_freq.float()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        half = emb.shape[-1] // 2
        sin = emb.sin() * scale
        self.register_buffer("cos", emb.cos() * scale)
        self.register_buffer("sin", torch.cat([-sin[:, :half], sin[:, half:]], dim=-1))  # rotate_half's sign folded in

    def _rms(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def forward(self, ids, positions, mask, *past):
        b, t = ids.shape
        h, kvh, d = self.heads, self.kv_heads, self.head_dim
        cos, sin = self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)  # [B, T, 1, D]
        x = self.embed[ids]
        new = []
        for i in range(len(self.qkv)):
            qkv = (self._rms(x, self.ln1[i]) @ self.qkv[i].t()).view(b, t, h + 2 * kvh, d)
            qk = qkv[:, :, : h + kvh]
            qk = qk * cos + torch.cat([qk[..., d // 2:], qk[..., : d // 2]], dim=-1) * sin
            q, k_new, v_new = qk[:, :, :h], qk[:, :, h:], qkv[:, :, h + kvh:]  # [B, T, *, D]
            new += [k_new.transpose(0, 1), v_new.transpose(0, 1)]  # [T, B, KV, D]
            k = torch.cat([past[2 * i].permute(1, 2, 0, 3), k_new.transpose(1, 2)], dim=2)  # [B, KV, S, D]
            v = torch.cat([past[2 * i + 1].permute(1, 2, 0, 3), v_new.transpose(1, 2)], dim=2)
            if kvh != h:
                k, v = k.repeat_interleave(h // kvh, dim=1), v.repeat_interleave(h // kvh, dim=1)
            scores = q.transpose(1, 2) @ k.transpose(2, 3) * d ** -0.5 + mask  # [B, H, T, S]
            o = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, h * d)
            x = x + o @ self.o[i].t()
            gate, up = (self._rms(x, self.ln2[i]) @ self.gate_up[i].t()).split(self.inter, dim=-1)
            x = x + (nn.functional.silu(gate) * up) @ self.down[i].t()
        logits = self._rms(x[:, -1], self.norm) @ self.head.t()
        return (logits, *new)


def weights_key(lm) -> str:
    """A hash of the LM's config and weights (and FORMAT): the export's cache name."""
    h = hashlib.sha256(f"format {FORMAT}".encode())
    h.update(json.dumps(lm.config.to_dict(), sort_keys=True, default=str).encode())
    for name, p in lm.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def bytes_per_token(lm, matrix_bytes: float) -> int:
    """Bytes of an exported decoder's weights one decode step reads: every matrix but the
    embedding at `matrix_bytes` a weight, norms in fp32, plus one fp32 embedding row."""
    total = sum(p.numel() * (matrix_bytes if p.dim() == 2 else 4) for n, p in lm.named_parameters()
                if "embed_tokens" not in n)
    return int(total + lm.model.embed_tokens.weight.shape[1] * 4)


def export_decoder(lm, path: Path) -> Path:
    """Write DecoderStep(lm) as ONNX to `path` (temporary file, then renamed) -> path."""
    step = DecoderStep(lm).eval()
    n = len(step.qkv)
    b, t, p = 2, 3, 2  # sizes > 1, so the tracer keeps them symbolic
    ids = torch.zeros(b, t, dtype=torch.long)
    pos = torch.arange(t).repeat(b, 1)
    mask = torch.zeros(b, 1, t, p + t)
    past = [torch.zeros(p, b, step.kv_heads, step.head_dim) for _ in range(2 * n)]
    past_names = [f"past_{kv}{i}" for i in range(n) for kv in "kv"]
    new_names = [f"new_{kv}{i}" for i in range(n) for kv in "kv"]
    axes = {"ids": {0: "B", 1: "T"}, "positions": {0: "B", 1: "T"}, "mask": {0: "B", 2: "T", 3: "S"},
            "logits": {0: "B"}}
    axes.update({name: {0: "P", 1: "B"} for name in past_names})
    axes.update({name: {0: "T", 1: "B"} for name in new_names})
    # the TorchScript exporter: the torch.export one needs onnxscript, and this graph is plain
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(step, (ids, pos, mask, *past), str(tmp), dynamo=False, opset_version=17,
                          input_names=["ids", "positions", "mask", *past_names],
                          output_names=["logits", *new_names], dynamic_axes=axes)
    return path


def exported_decoder(lm, quantize: str | None = None) -> Path:
    """The cached export of lm (made now if missing) -> its .onnx path. quantize "int8": the
    export with every MatMul's weights in int8 (ONNX Runtime's dynamic quantization: int8
    weights per output channel, activations quantized per step)."""
    path = cache_root() / weights_key(lm) / "decoder.onnx"
    if not path.exists():
        export_decoder(lm, path)
    if quantize is None:
        return path
    if quantize != "int8":
        raise EngineError(f"quantize={quantize!r}: engine 'onnx' knows None (fp32) and 'int8'")
    int8 = path.with_name("decoder.int8.onnx")
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) is for other graphs
        try:
            with atomic_path(int8) as tmp:
                quantize_dynamic(path, tmp, weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"])
        finally:
            logging.disable(logging.NOTSET)
    return int8


class OnnxCache:
    """The KV cache as Engine's continuous batch indexes it: k[i], v[i] FloatTensor [B, KV,
    capacity, D] (valid BoolTensor [B, capacity], padded, length), stored as [capacity, B, KV, D]:
    ONNX Runtime's layout, in which a prefix of columns of all rows is one contiguous block that
    the decoder reads without a copy."""

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int):
        shape = (capacity, batch, kv_heads, head_dim)
        self.k = [torch.empty(shape).permute(1, 2, 0, 3) for _ in range(layers)]
        self.v = [torch.empty(shape).permute(1, 2, 0, 3) for _ in range(layers)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool)
        self.batch, self.capacity, self.length = batch, capacity, 0
        self.padded = False


def _onnx_layout(t: torch.Tensor) -> np.ndarray:
    """[B, KV, S, D] (a view of an OnnxCache) -> float32 array [S, B, KV, D], contiguous (a copy
    only when the view holds fewer rows than the cache)."""
    return t.permute(2, 0, 1, 3).contiguous().numpy()


class OnnxLlama:
    """The decoder as Engine's loop sees it (LeanLlama's interface): forward(ids, positions,
    cache) -> logits of the last column, new_cache(batch, capacity), vocab_size, device, dtype."""

    def __init__(self, lm, *, threads: int = 1, quantize: str | None = None):
        ort = import_onnxruntime()
        check_supported(lm)
        cfg = lm.config
        self.layers = cfg.num_hidden_layers
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.vocab_size = lm.lm_head.weight.shape[0]
        self.max_positions = int(cfg.max_position_embeddings)
        self.dtype, self.device = torch.float32, torch.device("cpu")
        self.path = exported_decoder(lm, quantize)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a shared CPU: no spin-waiting
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.past_names = [f"past_{kv}{i}" for i in range(self.layers) for kv in "kv"]
        self._bytes = bytes_per_token(lm, 1 if quantize == "int8" else 4)

    def new_cache(self, batch: int, capacity: int) -> OnnxCache:
        if capacity > self.max_positions:
            raise EngineError(f"{capacity} positions exceed the model's {self.max_positions}")
        return OnnxCache(self.layers, batch, self.kv_heads, capacity, self.head_dim)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: OnnxCache, *, last_only: bool = True,
                head_group: int | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
        """ids, positions LongTensor [B, T] -> logits FloatTensor [B, V] of the last column.
        A prefill or whole-batch step writes cache columns [cache.length, cache.length + T); a
        ragged decode step (cols LongTensor [B], T == 1; see LeanLlama.forward) writes row i's
        keys and values at column cols[i] and attends to the columns cache.valid marks among the
        first cache.length."""
        if not last_only:
            raise EngineError("the onnx decoder returns the last column's logits only")
        b, t = ids.shape
        start = cache.length
        end = start if cols is not None else start + t
        if end > cache.capacity:
            raise AnyGPTError(f"KV cache overflow: {end} positions for a cache of {cache.capacity}")
        rows = torch.arange(b)
        if cols is not None:
            # the graph appends this step's column after the past ones: the slot being written
            # now (cols[i], not yet filled) is masked out of the past, the appended one allowed
            past = cache.valid[:, :start].clone()
            past[rows, cols] = False
            allowed = torch.cat([past, torch.ones(b, 1, dtype=torch.bool)], dim=1)[:, None]  # [B, 1, S + 1]
        else:
            valid = cache.valid[:, :end] if cache.padded else torch.ones(b, end, dtype=torch.bool)
            allowed = valid[:, None, :].expand(b, t, end).clone()  # [B, T, S]
            if t > 1:
                allowed &= torch.ones(t, end, dtype=torch.bool).tril(start)
                own = torch.arange(t)
                allowed[:, own, start + own] = True  # a pad query attends to itself only: no empty row
        mask = torch.zeros(allowed.shape).masked_fill_(~allowed, torch.finfo(torch.float32).min)[:, None]
        feed = {"ids": ids.numpy(), "positions": positions.numpy(), "mask": mask.numpy()}
        for i in range(self.layers):
            feed[self.past_names[2 * i]] = _onnx_layout(cache.k[i][:, :, :start])
            feed[self.past_names[2 * i + 1]] = _onnx_layout(cache.v[i][:, :, :start])
        out = self.session.run(None, feed)
        for i in range(self.layers):
            new_k, new_v = torch.from_numpy(out[1 + 2 * i]), torch.from_numpy(out[2 + 2 * i])  # [T, B, KV, D]
            if cols is not None:
                cache.k[i][rows, :, cols] = new_k[0]
                cache.v[i][rows, :, cols] = new_v[0]
            else:
                cache.k[i][:, :, start:end] = new_k.permute(1, 2, 0, 3)
                cache.v[i][:, :, start:end] = new_v.permute(1, 2, 0, 3)
        if cols is None:
            cache.length = end
        return torch.from_numpy(out[0])

    __call__ = forward

    def weight_bytes_per_token(self) -> int:
        """Bytes one decode step reads: every weight but the embedding matrix (projections in
        int8 when quantized), plus one fp32 row of it."""
        return self._bytes


class OnnxEngine(Engine):
    """anygpt.lm.engine.Engine with its forward pass in ONNX Runtime. quantize: None (fp32,
    HF generate's greedy tokens) or "int8" (see exported_decoder; close to fp32, not equal).
    threads: ONNX Runtime's intra-op threads, fixed when the session is built (default 1; a
    `generate(threads=...)` sets torch's threads only, used by the sampling step)."""

    def __init__(self, lm, layout: TokenLayout, *, max_batch: int = 8, max_len: int | None = None,
                 quantize: str | None = None, threads: int | None = None, tokenizer=None, pad_id: int | None = None):
        super().__init__(lm, layout, max_batch=max_batch, max_len=max_len, quantize=quantize, threads=threads,
                         tokenizer=tokenizer, pad_id=pad_id, network=OnnxLlama(lm, threads=threads or 1, quantize=quantize))
