"""The ONNX Runtime backend (anygpt.lm.onnx_engine): greedy parity with HF generate, well-formed
segments whatever the weights, the export cache, and the backend choice by name (--engine)."""

from __future__ import annotations

import os

import pytest
import torch
from test_constraint_state import assert_generations_well_formed, marker_bias, marker_requests, well_formed
from test_engine_parity import hf_rows, prompts

from anygpt.lm.backends import BackendUnavailable, build_engine
from anygpt.lm.engine import Engine, EngineError, Request
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.native_engine import NativeEngine
from anygpt.lm.onnx_engine import OnnxEngine, exported_decoder


pytestmark = pytest.mark.usefixtures("temporary_export_cache")


@pytest.fixture(scope="module")
def onnx_engine(compact_lm):
    model, tok, layout = compact_lm
    return OnnxEngine(model, layout, max_batch=25)


@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_matches_hf_generate(compact_lm, onnx_engine, batch, constrained):
    model, tok, layout = compact_lm
    settings = GenerationSettings(max_new_tokens=40, do_sample=False, constrained=constrained)
    for seed in range(3):
        batch_prompts = prompts(tok, layout, batch, seed)  # mixed lengths: left padding; some open a segment
        want = hf_rows(model, layout, batch_prompts, settings)
        got = onnx_engine.generate([Request(p, settings, stop_ids=[2]) for p in batch_prompts])
        assert [r.ids for r in got] == want


def test_gqa_model_matches_hf_generate(gqa_lm):
    model, tok, layout = gqa_lm
    settings = GenerationSettings(max_new_tokens=30, do_sample=False)
    batch_prompts = prompts(tok, layout, 4, seed=9)
    got = OnnxEngine(model, layout).generate([Request(p, settings, stop_ids=[2]) for p in batch_prompts])
    assert [r.ids for r in got] == hf_rows(model, layout, batch_prompts, settings)


def test_sampling_gives_the_torch_engines_tokens(compact_lm, onnx_engine):
    """Same logits (to float rounding), same per-request random stream: the same samples."""
    model, tok, layout = compact_lm
    settings = GenerationSettings(max_new_tokens=30, do_sample=True, top_k=20)
    batch_prompts = prompts(tok, layout, 6, seed=5)
    requests = [Request(p, settings, generator=i, stop_ids=[2]) for i, p in enumerate(batch_prompts)]
    assert [r.ids for r in onnx_engine.generate(requests)] == [r.ids for r in Engine(model, layout).generate(requests)]


def test_200_generations_are_all_well_formed(compact_lm, onnx_engine):
    model, tok, layout = compact_lm
    bias = marker_bias(layout, model.config.vocab_size)
    assert_generations_well_formed(onnx_engine, layout, marker_requests(200, bias), bias)


def test_export_is_cached_and_follows_the_weights(compact_lm, onnx_engine):
    model, _, _ = compact_lm
    path = exported_decoder(model)
    assert path == onnx_engine.model.path and path.is_file()
    assert str(path).startswith(os.environ["ANYGPT_CACHE"])
    stamp = path.stat().st_mtime_ns
    assert exported_decoder(model) == path and path.stat().st_mtime_ns == stamp  # reused, not rewritten
    other = type(model)(model.config)  # same shape, other weights: another export
    assert exported_decoder(other) != path


def test_backend_names(compact_lm):
    model, _, layout = compact_lm
    assert isinstance(build_engine("onnx", model, layout), OnnxEngine)
    assert isinstance(build_engine("auto", model, layout), OnnxEngine)  # installed: the faster one
    auto_int8 = build_engine("auto", model, layout, quantize="int8")
    assert type(auto_int8) is NativeEngine and auto_int8.quantize == "int8"  # int8: the C++ step is faster
    with pytest.raises(EngineError, match="quantize='int4'"):
        build_engine("onnx", model, layout, quantize="int4")
    with pytest.raises(EngineError, match="unknown engine 'vllm'"):
        build_engine("vllm", model, layout)


def test_not_installed_names_the_extra_and_only_auto_falls_back(compact_lm, without_onnxruntime):
    model, _, layout = compact_lm
    with pytest.raises(BackendUnavailable, match=r"pip install 'anygpt\[onnx\]'"):
        build_engine("onnx", model, layout)
    assert type(build_engine("auto", model, layout)) is Engine


def test_a_model_it_cannot_hold_is_a_clear_error(compact_lm, monkeypatch):
    model, _, layout = compact_lm
    monkeypatch.setattr(model.config, "hidden_act", "gelu")
    with pytest.raises(BackendUnavailable, match="cannot hold this model: its hidden_act is 'gelu'"):
        build_engine("onnx", model, layout)


def test_int8_export_is_int8_close_to_fp32_and_well_formed(compact_lm, onnx_engine):
    import onnx

    model, tok, layout = compact_lm
    int8 = OnnxEngine(model, layout, quantize="int8", max_batch=25)
    ops = {n.op_type for n in onnx.load(str(int8.model.path)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    assert int8.model.weight_bytes_per_token() < onnx_engine.model.weight_bytes_per_token() / 3
    ids = prompts(tok, layout, 1, seed=2)[0][None]
    pos = torch.arange(ids.shape[1])[None]
    a = onnx_engine.model(ids, pos, _full_cache(onnx_engine.model, ids.shape[1]))
    b = int8.model(ids, pos, _full_cache(int8.model, ids.shape[1]))
    assert float((a - b).abs().max()) < 0.1 * float(a.std())
    bias = marker_bias(layout, model.config.vocab_size)
    settings = GenerationSettings(max_new_tokens=48, do_sample=True)
    rows = [r.ids for r in int8.generate([Request([5, 6, 7], settings, generator=i, logit_bias=bias)
                                          for i in range(50)])]
    assert [i for i, r in enumerate(rows) if not well_formed(layout, r)] == []


def _full_cache(decoder, width):
    cache = decoder.new_cache(1, width)
    cache.valid[:] = True
    return cache
