"""int8 inference for the engine: dynamic int8 projections (weights int8 per output channel,
activations quantized per call), through PyTorch's own fbgemm/x86 kernels
(`torch.ops.quantized.linear_dynamic`), so nothing beyond torch is installed.

Why these kernels: measured on this machine (benchmarks/bench_generation.py), a one-row
product over a 1152 x 384 weight takes ~45 us with them against ~130 us for fp32 and ~320 us
for `torch._weight_int8pack_mm` (weight-only int8, no fast CPU path here); the whole d384 x 6
model's weights shrink from 58 MB to 15 MB, which fits the L3 cache.

The int8 scheme also keeps the KV cache in bfloat16 (`LeanLlama.kv_dtype`): at one thread a
decode step's attention is bound by reading the cache, and bf16 halves it (docs/generation.md
gives the measurement).

Quality: int8 changes the logits a little, so greedy tokens can differ from fp32 after a
near-tie; the benchmark prints the per-token agreement with fp32 greedy.
"""

from __future__ import annotations

import warnings

import torch

from anygpt.errors import AnyGPTError

SCHEMES = ("int8",)


class Int8Dense:
    """x FloatTensor [..., in] -> [..., out]: dynamic int8 product with a weight quantized
    symmetrically per output row (scale = max |w| / 127)."""

    def __init__(self, weight: torch.Tensor):
        w = weight.detach().float().cpu()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # torch 2.13 marks quantized tensor creation deprecated
            warnings.simplefilter("ignore", UserWarning)
            q = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(q, None)
        self.out_features, self.in_features = w.shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)  # any leading dims

    def nbytes(self) -> int:
        return self.out_features * self.in_features + 4 * self.out_features


def quantize_lean(model, scheme: str = "int8") -> None:
    """Replace every projection of a LeanLlama (attention, MLP, LM head) by an int8 one, in
    place, and make its new caches bfloat16. The embedding and the norms stay in their dtype."""
    if scheme not in SCHEMES:
        raise AnyGPTError(f"unknown quantization {scheme!r}; choose from {', '.join(SCHEMES)}")
    if model.device.type != "cpu" or model.dtype != torch.float32:
        raise AnyGPTError("int8 quantization runs on CPU with an fp32 model "
                          f"(this one is {model.dtype} on {model.device})")
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    for layer in model.layers:
        for name in ("qkv", "o", "gate_up", "down"):
            layer[name] = Int8Dense(_float_weight(layer[name]))
    model.head = Int8Dense(_float_weight(model.head))
    model.kv_dtype = torch.bfloat16
    if model.head_groups:
        model.set_head_groups([rows for rows, _ in model.head_groups], Int8Dense)


def _float_weight(proj) -> torch.Tensor:
    """The [out, in] weight of a Dense or Shared projection."""
    return proj.weight()
