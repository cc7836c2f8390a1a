"""A lean LLaMA forward over a static KV cache, for the generation engine (`anygpt.lm.engine`).

It computes what `transformers`' LlamaForCausalLM computes (RMSNorm in fp32, rotary embedding
from the HF model's own `inv_freq`, SDPA attention with the same scaling, SiLU-gated MLP) with
far fewer operators per decode step: no mask building, no cache object, no output dataclasses.
At the sizes anygpt runs on a CPU (d384 x 6 layers: ~40 MFLOP a token) per-operator overhead,
not arithmetic, dominates a step, which is why this exists (issue 16).

Weights are shared with the HF model (no copy), except where `quantize_lm` (anygpt.lm.quantize)
replaced a projection by an int8 one. The HF model stays the reference: tests assert that
greedy decoding through this forward gives HF generate's tokens.

Cache layout: `StaticKVCache.k[layer]`, `.v[layer]`: FloatTensor [B, KV, capacity, D]. Every row
writes the same columns (left padding: a row's pad columns are masked out of attention), so
one decode step writes column `length` for all rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anygpt.errors import AnyGPTError


class StaticKVCache:
    """Preallocated keys and values: k[layer], v[layer] FloatTensor [B, KV, capacity, D].

    `length` columns are filled; `valid` BoolTensor [B, capacity] marks real (not padding)
    columns. Allocated with torch.empty, so a cache costs no time until it is written."""

    def __init__(self, layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (batch, kv_heads, capacity, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.batch, self.capacity, self.length = batch, capacity, 0
        self.padded = False  # any pad column in `valid`: attention needs a mask

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class LeanLlama:
    """Decode-time view of a HF LlamaForCausalLM (or any model with its module names and math).

    hf: the model. copy_weights: keep fused, transposed fp32 copies of the projections (faster
    one-row products on CPU, measured; costs one more copy of the weights); default: for fp32
    models on CPU under COPY_LIMIT bytes. Otherwise the HF parameters are used in place with
    F.linear. Each projection is a callable x -> x @ W.T (`layers[i]["qkv" | "o" | "gate_up" |
    "down"]`, `head`); anygpt.lm.quantize swaps them for int8 ones."""

    def __init__(self, hf, *, copy_weights: bool | None = None):
        cfg = hf.config
        if getattr(cfg, "model_type", "llama") not in ("llama",):
            raise AnyGPTError(f"the generation engine runs LLaMA models; this one is {cfg.model_type!r} "
                              "(use engine='hf')")
        if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
            raise AnyGPTError("the generation engine runs LLaMA models without biases (use engine='hf')")
        if getattr(cfg, "hidden_act", "silu") != "silu":
            raise AnyGPTError(f"the generation engine supports hidden_act 'silu', not {cfg.hidden_act!r}")
        self.hf = hf
        self.config = cfg
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scaling = self.head_dim ** -0.5
        self.eps = cfg.rms_norm_eps
        body = hf.model
        self.embed = body.embed_tokens.weight
        self.norm = body.norm.weight
        if copy_weights is None:
            nbytes = sum(p.numel() * p.element_size() for p in hf.parameters())
            copy_weights = self.embed.device.type == "cpu" and self.embed.dtype == torch.float32 \
                and nbytes <= COPY_LIMIT
        self.layers = []
        for layer in body.layers:
            a, m = layer.self_attn, layer.mlp
            qkv, gate_up = [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight], [m.gate_proj.weight, m.up_proj.weight]
            self.layers.append({
                "ln1": layer.input_layernorm.weight, "ln2": layer.post_attention_layernorm.weight,
                "qkv": Dense(torch.cat(qkv)) if copy_weights else Shared(*qkv),
                "o": Dense(a.o_proj.weight) if copy_weights else Shared(a.o_proj.weight),
                "gate_up": Dense(torch.cat(gate_up)) if copy_weights else Shared(*gate_up),
                "down": Dense(m.down_proj.weight) if copy_weights else Shared(m.down_proj.weight),
            })
        self.head = Dense(hf.lm_head.weight) if copy_weights else Shared(hf.lm_head.weight)
        self.head_weight = hf.lm_head.weight  # [V, d], for the sub-heads below
        # (ids LongTensor [n], projection to those n logits) per group of ids; see set_head_groups
        self.head_groups: list[tuple[torch.Tensor, object]] = []
        self.intermediate = cfg.intermediate_size
        self.vocab_size = hf.lm_head.weight.shape[0]
        self.dtype = self.embed.dtype
        self.kv_dtype = self.dtype  # the KV cache's (anygpt.lm.quantize's int8 scheme sets bfloat16)
        self.device = self.embed.device
        rot = body.rotary_emb
        self.inv_freq = rot.inv_freq.float()
        self.rope_scaling = float(getattr(rot, "attention_scaling", 1.0))
        if getattr(rot, "rope_type", "default") == "dynamic":
            raise AnyGPTError("the generation engine does not support dynamic RoPE scaling (use engine='hf')")
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # one attribute: two threads may read it

    # ----------------------------------------------------------------- rotary tables
    def _rope_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, signed sin FloatTensor [length, D] for positions 0..length-1, as HF computes
        them (the first half of sin negated, see forward)."""
        if self._rope is None or self._rope[0].shape[0] < length:
            n = max(length, int(getattr(self.config, "max_position_embeddings", 0) or 0))
            pos = torch.arange(n, dtype=torch.float32, device=self.device)
            freqs = pos[:, None] * self.inv_freq.to(self.device)[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos = (emb.cos() * self.rope_scaling).to(self.dtype)
            # rotate_half(x) * sin == x.roll(D/2) * sin_signed (the first half's sign folded in): 2 ops, not 5
            sin = (emb.sin() * self.rope_scaling).to(self.dtype)
            half = sin.shape[-1] // 2
            self._rope = cos, torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
        return self._rope

    def new_cache(self, batch: int, capacity: int) -> StaticKVCache:
        self._rope_tables(capacity)  # positions never exceed the cache's columns
        return StaticKVCache(len(self.layers), batch, self.kv_heads, capacity, self.head_dim, self.kv_dtype, self.device)

    # ----------------------------------------------------------------- forward
    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op, bit-identical to HF's formula in fp32
            return F.rms_norm(x, (x.shape[-1],), w, self.eps)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * h.to(x.dtype)

    @torch.inference_mode()
    def set_head_groups(self, groups: list[torch.Tensor], make=None) -> None:
        """Sub-heads over groups of ids (LongTensor [n] each): forward(head_group=g) computes only
        group g's logits and sets the others to -inf. `make(weight [n, d])` builds a projection
        (default Dense; anygpt.lm.quantize passes Int8Dense, whose per-row int8 products are
        exactly the full head's, so only int8 engines use this)."""
        make = make or Dense
        self.head_groups = [(g.to(self.device), make(self.head_weight.detach()[g])) for g in groups]

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: StaticKVCache,
                *, last_only: bool = True, head_group: int | None = None,
                cols: torch.Tensor | None = None) -> torch.Tensor:
        """ids, positions LongTensor [B, T] (positions: each row's own, from 0 at its first real
        token) -> logits FloatTensor [B, V] of the last column (or [B, T, V] if not last_only).
        head_group: compute only that group's logits (see set_head_groups), -inf elsewhere.

        Writes keys/values into cache columns [cache.length, cache.length + T) and advances
        cache.length. T > 1 is a prefill (causal); T == 1 a decode step.
        cols: LongTensor [B], a ragged decode step (T == 1; continuous batching, whose rows
        joined at different times): row i writes column cols[i] and attends to the columns
        cache.valid marks among the first cache.length, which the caller sets (and keeps)."""
        b, t = ids.shape
        start, end = cache.length, cache.length + t
        if cols is not None:
            start = end = cache.length
        if end > cache.capacity:
            raise AnyGPTError(f"KV cache overflow: {end} positions for a cache of {cache.capacity}")
        cos_t, sin_t = self._rope  # sized by new_cache
        cos, sin = cos_t[positions].unsqueeze(2), sin_t[positions].unsqueeze(2)  # [B, T, 1, D]
        mask = None
        if t > 1:
            causal = torch.ones(t, end, dtype=torch.bool, device=ids.device).tril(start)
            valid = cache.valid[:, None, :end]
            # a pad query attends to itself only, so that no row is fully masked (NaN)
            own = torch.zeros(t, end, dtype=torch.bool, device=ids.device)
            own[:, start:end] = torch.eye(t, dtype=torch.bool, device=ids.device)
            mask = ((causal & valid) | own).unsqueeze(1) if cache.padded else None
        elif cache.padded:
            mask = cache.valid[:, None, None, :end]
        rows = torch.arange(b, device=ids.device) if cols is not None else None
        kv_dtype = self.kv_dtype if self.kv_dtype != self.dtype else None
        x = F.embedding(ids, self.embed)
        h, d, kvh = self.heads, self.head_dim, self.kv_heads
        gqa = {"enable_gqa": True} if kvh != h else {}
        for i, w in enumerate(self.layers):
            qkv = w["qkv"](self._rms(x, w["ln1"])).view(b, t, h + 2 * kvh, d)
            qk = qkv[:, :, : h + kvh]
            qk = qk * cos + qk.roll(d // 2, dims=-1) * sin  # q and k rotated in one pass: [B, T, H + KV, D]
            v = qkv[:, :, h + kvh:]
            if kv_dtype is not None:
                qk, v = qk.to(kv_dtype), v.to(kv_dtype)
            kc, vc = cache.k[i], cache.v[i]
            if cols is None:
                kc[:, :, start:end] = qk[:, :, h:].transpose(1, 2)
                vc[:, :, start:end] = v.transpose(1, 2)
            else:
                kc[rows, :, cols] = qk[:, 0, h:]
                vc[rows, :, cols] = v[:, 0]
            o = F.scaled_dot_product_attention(qk[:, :, :h].transpose(1, 2), kc[:, :, :end], vc[:, :, :end],
                                               attn_mask=mask, scale=self.scaling,
                                               is_causal=t > 1 and mask is None, **gqa)
            if kv_dtype is not None:
                o = o.to(self.dtype)
            x = x + w["o"](o.transpose(1, 2).reshape(b, t, h * d))
            gate, up = w["gate_up"](self._rms(x, w["ln2"])).split(self.intermediate, dim=-1)
            x = x + w["down"](F.silu(gate) * up)
        cache.length = end
        if last_only:
            x = x[:, -1]
        x = self._rms(x, self.norm)
        if head_group is None:
            return self.head(x).float()
        rows, head = self.head_groups[head_group]
        out = torch.full((*x.shape[:-1], self.vocab_size), float("-inf"), dtype=torch.float32, device=x.device)
        return out.index_copy_(-1, rows, head(x).float())

    __call__ = forward

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decode step reads (every projection, the norms and one
        embedding row): the numerator of the memory-bandwidth limit on tokens/s."""
        total = sum(_nbytes(f) for w in self.layers for k, f in w.items() if k not in ("ln1", "ln2"))
        total += sum(w["ln1"].numel() + w["ln2"].numel() for w in self.layers) * self.norm.element_size()
        return total + _nbytes(self.head) + self.embed[0].numel() * self.embed.element_size()


COPY_LIMIT = 2 * 1024**3  # bytes of weights up to which LeanLlama keeps transposed copies


class Dense:
    """x [..., in] -> x @ W.T [..., out] for a float weight W [out, in], kept transposed
    (Wt [in, out], contiguous): on this CPU a one-row product streams Wt about twice as fast
    as F.linear's row-wise dot products (benchmarks/bench_generation.py measures it)."""

    def __init__(self, weight: torch.Tensor):
        self.wt = weight.detach().t().contiguous()
        self.out_features = weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.wt

    def weight(self) -> torch.Tensor:
        return self.wt.t()

    def nbytes(self) -> int:
        return self.wt.numel() * self.wt.element_size()


class Shared:
    """x [..., in] -> [..., sum of outs]: F.linear over the model's own weights [out, in]
    (no copy), outputs concatenated (q, k, v or gate, up)."""

    def __init__(self, *weights: torch.Tensor):
        self.weights = weights

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weights) == 1:
            return F.linear(x, self.weights[0])
        return torch.cat([F.linear(x, w) for w in self.weights], dim=-1)

    def weight(self) -> torch.Tensor:
        return torch.cat([w.detach() for w in self.weights])

    def nbytes(self) -> int:
        return sum(w.numel() * w.element_size() for w in self.weights)


def _nbytes(f) -> int:
    return f.nbytes()
