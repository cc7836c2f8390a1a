"""A LLaMA model folder's weights read straight from model.safetensors into modules named as
transformers names them, without importing transformers: what the generation engine
(anygpt.lm.llama_static.LeanLlama) reads, at a cold start's cost of torch + safetensors.

    lm = PlainLlama.from_folder(folder)   # None when the folder needs transformers
    hf = lm.to_hf()                       # LlamaForCausalLM sharing these very tensors

PlainLlama has no forward of its own: the engine runs it. Whatever needs HF's model (HF
generate, classifier-free guidance, training, save_pretrained) gets it from `to_hf()`, which
AnyGPT calls on first use of its `lm`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from anygpt.lm.hf_folder import load_lm_hf, read_json

# config.json's rope_scaling values that mean transformers' default RoPE (what LeanLlama computes)
_PLAIN_ROPE = (None, {}, {"rope_type": "default"}, {"type": "default"})


class PlainConfig(SimpleNamespace):
    """config.json as attributes (with HF's defaults for head_dim and num_key_value_heads)."""

    def to_dict(self) -> dict:
        return dict(vars(self))


class PlainLlama(nn.Module):
    """model.embed_tokens / model.layers[i].{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
    input_layernorm, post_attention_layernorm} / model.norm / lm_head, as in LlamaForCausalLM,
    each holding a `weight` [out, in] (norms [d]); model.rotary_emb.inv_freq FloatTensor [D/2]
    computed as transformers computes the default RoPE. folder: where it was read."""

    def __init__(self, config: PlainConfig, weights: dict[str, torch.Tensor], folder: Path):
        """weights: LlamaForCausalLM's state dict names -> tensors, held as they are."""
        super().__init__()
        self.config = config
        self.folder = folder

        def holder(prefix: str, names: tuple[str, ...]) -> nn.Module:
            module = nn.Module()
            for name in names:
                setattr(module, name, _Weight(weights[f"{prefix}{name}.weight"]))
            return module

        def layer(i: int) -> nn.Module:
            block = holder(f"model.layers.{i}.", ("input_layernorm", "post_attention_layernorm"))
            block.self_attn = holder(f"model.layers.{i}.self_attn.", ("q_proj", "k_proj", "v_proj", "o_proj"))
            block.mlp = holder(f"model.layers.{i}.mlp.", ("gate_proj", "up_proj", "down_proj"))
            return block

        self.model = holder("model.", ("embed_tokens", "norm"))
        self.model.layers = nn.ModuleList(layer(i) for i in range(config.num_hidden_layers))
        hd = config.head_dim
        self.model.rotary_emb = SimpleNamespace(
            inv_freq=1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd)),
            attention_scaling=1.0, rope_type="default")
        self.lm_head = _Weight(weights["lm_head.weight"])

    @classmethod
    def from_folder(cls, folder: str | Path, *, dtype: torch.dtype = torch.float32) -> "PlainLlama | None":
        """-> the model of a folder with config.json and one model.safetensors of a LLaMA that
        LeanLlama runs exactly (no biases, SiLU, default RoPE), or None otherwise."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = _plain_config(read_json(folder / "config.json"))
        if config is None or not (folder / "model.safetensors").is_file():
            return None
        weights = {k: v.to(dtype) for k, v in load_file(str(folder / "model.safetensors")).items()}
        if config.tie_word_embeddings and "lm_head.weight" not in weights:
            weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
        if set(weights) != _state_names(config.num_hidden_layers):
            return None  # not the names LlamaForCausalLM saves: let transformers report it
        model = cls(config, weights, folder)
        if config.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        return model.eval()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def forward(self, *args, **kwargs):
        raise TypeError("PlainLlama holds weights for the generation engine; call to_hf() for a forward pass")

    def to_hf(self):
        """-> LlamaForCausalLM of the same folder (its config and generation config) whose
        parameters are this model's tensors (no copy; an in-place change shows in both). It
        reads the folder's weights once more, then drops them for these."""
        hf = load_lm_hf(self.folder, dtype=self.dtype, device=str(self.device))
        hf.load_state_dict(self.state_dict(keep_vars=True), assign=True)
        if self.config.tie_word_embeddings:
            hf.tie_weights()
        return hf.requires_grad_(True).eval()  # trainable, as from_pretrained gives it


class _Weight(nn.Module):
    """One `weight` parameter (frozen), as an nn.Linear, nn.Embedding or RMSNorm holds it."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)


def _state_names(layers: int) -> set[str]:
    """LlamaForCausalLM's state dict names for `layers` decoder layers."""
    per_layer = ["input_layernorm", "post_attention_layernorm", *(f"self_attn.{p}_proj" for p in "qkvo"),
                 *(f"mlp.{p}_proj" for p in ("gate", "up", "down"))]
    names = {"model.embed_tokens", "model.norm", "lm_head"} | {f"model.layers.{i}.{n}" for i in range(layers) for n in per_layer}
    return {f"{n}.weight" for n in names}


def _plain_config(raw: dict | None) -> PlainConfig | None:
    """config.json -> PlainConfig, or None for a model LeanLlama would not run as HF does."""
    if not raw or raw.get("model_type") != "llama" or raw.get("attention_bias") or raw.get("mlp_bias") \
            or raw.get("hidden_act", "silu") != "silu" or raw.get("rope_scaling") not in _PLAIN_ROPE \
            or raw.get("partial_rotary_factor", 1.0) != 1.0 or "rope_parameters" in raw:
        return None
    c = dict(raw)
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    if c.get("head_dim") is None:
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("rms_norm_eps", 1e-6)
    c.setdefault("tie_word_embeddings", False)
    c.setdefault("max_position_embeddings", 2048)
    return PlainConfig(**c)
