"""The llama.cpp backend (anygpt.lm.llamacpp_engine): HF's logits through prefill, decode and
rows leaving the batch; greedy tokens; well-formed segments whatever the weights (q8_0); the
export cache; and the message when llama-cpp-python is not installed. The runtime tests need
the `llamacpp` extra (a source build, `bash scripts/setup.sh --llamacpp`); without it only the
last test runs."""

from __future__ import annotations

import os

import pytest
import torch
from test_constraint_state import assert_generations_well_formed, marker_bias, marker_requests
from test_engine_parity import hf_rows, prompts

from anygpt.lm.backends import BackendUnavailable, build_engine
from anygpt.lm.engine import Request
from anygpt.lm.generation import GenerationSettings

def _llama_cpp():
    return pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed (bash scripts/setup.sh --llamacpp)")


pytestmark = pytest.mark.usefixtures("temporary_export_cache")


def _hf_last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def test_logits_are_hf_logits_through_prefill_decode_and_rows_leaving(gqa_lm):
    _llama_cpp()
    model, tok, layout = gqa_lm
    engine = build_engine("llamacpp", model, layout, max_batch=4)
    dec = engine.decoder(capacity=64)
    greedy = GenerationSettings(max_new_tokens=6, do_sample=False, constrained=False)
    rows = [[5, 9, 11, 40, 7], [3, 8], [12, 13, 14, 15, 16, 17, 18, 19, 20]]  # ragged: one batched prefill
    budgets = [6, 2, 6]  # the second ends first: the last row moves into its slot
    slots = dec.prefill_many([Request(r, greedy.with_(max_new_tokens=b)) for r, b in zip(rows, budgets)])
    seen = {id(s): list(r) for s, r in zip(slots, rows)}
    for _ in range(6):
        for slot, logits in zip(dec.rows, dec.logits):
            want = _hf_last_logits(model, seen[id(slot)] + slot.out)
            # float rounding only (llama.cpp orders its sums differently); a wrong row or position
            # moves these logits by tenths
            assert torch.allclose(logits, want, atol=1e-3), float((logits - want).abs().max())
        if not dec.rows:
            break
        dec.step()
    assert [len(s.result.ids) for s in slots] == budgets


def test_greedy_tokens_match_hf_generate(compact_lm):
    _llama_cpp()
    model, tok, layout = compact_lm
    settings = GenerationSettings(max_new_tokens=30, do_sample=False)
    batch = prompts(tok, layout, 6, seed=4)  # mixed lengths, some open a segment
    got = build_engine("llamacpp", model, layout).generate([Request(p, settings, stop_ids=[2]) for p in batch])
    assert [r.ids for r in got] == hf_rows(model, layout, batch, settings)


def test_q8_0_generations_are_all_well_formed(compact_lm):
    _llama_cpp()
    model, tok, layout = compact_lm
    engine = build_engine("llamacpp", model, layout, quantize="int8", max_batch=25)  # int8 is q8_0 here
    assert engine.quantize == "q8_0" and engine.model.path.name == "decoder.q8_0.gguf"
    bias = marker_bias(layout, model.config.vocab_size)
    assert_generations_well_formed(engine, layout, marker_requests(100, bias), bias)


def test_export_is_cached_and_follows_the_weights(compact_lm):
    _llama_cpp()
    from anygpt.lm.llamacpp_engine import exported_gguf

    model, _, _ = compact_lm
    path = exported_gguf(model)
    assert path.is_file() and str(path).startswith(os.environ["ANYGPT_CACHE"])
    stamp = path.stat().st_mtime_ns
    assert exported_gguf(model) == path and path.stat().st_mtime_ns == stamp
    assert exported_gguf(type(model)(model.config)) != path


def test_not_installed_names_the_extra(compact_lm, without_llama_cpp):
    model, _, layout = compact_lm
    with pytest.raises(BackendUnavailable, match=r"pip install 'anygpt\[llamacpp\]'"):
        build_engine("llamacpp", model, layout)
