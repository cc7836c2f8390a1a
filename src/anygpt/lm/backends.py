"""Decoder backends by name, the one place that maps `--engine NAME` to an engine object.

    engine = build_engine("auto", lm, layout, tokenizer=tok)   # the fastest one installed

- "engine": anygpt.lm.engine.Engine (torch, static KV cache; fp32 or int8);
- "onnx": anygpt.lm.onnx_engine.OnnxEngine (the forward pass in ONNX Runtime, fp32 or int8;
  the `onnx` extra);
- "native": anygpt.lm.native_engine.NativeEngine (the engine's int8 model with each prefill
  and decode step one call into anygpt's own C++ forward, compiled on first use; needs a C++
  compiler);
- "llamacpp": anygpt.lm.llamacpp_engine.LlamaCppEngine (the forward pass in llama.cpp, fp32 or
  q8_0, which "int8" names here; the `llamacpp` extra, a source build);
- "auto": the fastest that is installed and can hold the model, as measured in
  benchmarks/bench_generation.py: for int8 "native", then "onnx", then "engine"; for fp32
  "onnx", then "engine";
- "hf" (HF generate, the reference) is not an engine object: AnyGPT.complete_batch runs it.

Every backend runs the same loop over the same Request/Result types, with the segment
constraint as a token mask on the logits (anygpt.lm.constraints).
"""

from __future__ import annotations

from anygpt.errors import BackendUnavailable

__all__ = ["BACKENDS", "BackendUnavailable", "build_engine"]

BACKENDS = ("auto", "engine", "native", "onnx", "llamacpp")


def build_engine(name: str, lm, layout, *, quantize: str | None = None, **kwargs):
    """-> an engine for `lm` (kwargs: Engine's max_batch, max_len, threads, tokenizer, pad_id).
    quantize: None (fp32) or "int8". An unknown name: EngineError; a backend that is not
    installed or cannot hold the model: BackendUnavailable, except for "auto", which then
    falls back to "engine"."""
    from anygpt.lm.engine import Engine, EngineError

    if name == "auto":
        for candidate in (("native", "onnx") if quantize == "int8" else ("onnx",)):
            try:
                return build_engine(candidate, lm, layout, quantize=quantize, **kwargs)
            except BackendUnavailable:
                continue
        return Engine(lm, layout, quantize=quantize, **kwargs)
    if name == "engine":
        return Engine(lm, layout, quantize=quantize, **kwargs)
    if name == "onnx":
        from anygpt.lm.onnx_engine import OnnxEngine

        return OnnxEngine(lm, layout, quantize=quantize, **kwargs)
    if name == "native":
        from anygpt.lm.native_engine import NativeEngine

        return NativeEngine(lm, layout, quantize=quantize, **kwargs)
    if name == "llamacpp":
        from anygpt.lm.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(lm, layout, quantize=quantize, **kwargs)
    raise EngineError(f"unknown engine {name!r}; choose from {', '.join(BACKENDS)} (or 'hf' through AnyGPT)")
