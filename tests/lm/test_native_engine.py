"""The native backend (anygpt.lm.native_engine): its C++ decode step against the fp32 forward
through prefill, ragged decode steps and rows leaving a batch wider than one kernel tile;
sub-heads exactly equal to the full head; the portable (non-AVX-512) build equal to the
native one; well-formed segments whatever the weights; and the message without a compiler."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from test_constraint_state import assert_generations_well_formed, marker_bias, marker_requests

from anygpt.lm import native_engine
from anygpt.lm.backends import BackendUnavailable, build_engine
from anygpt.lm.engine import Engine, Request
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.llama_static import LeanLlama
from anygpt.lm.quantize import quantize_lean

pytestmark = pytest.mark.usefixtures("temporary_export_cache")

GREEDY = GenerationSettings(max_new_tokens=6, do_sample=False, constrained=False)


def _fp32_last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1]


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def test_prefills_and_steps_give_each_row_its_own_logits_as_rows_leave(gqa_lm):
    """11 ragged prompts, half sharing a prefix (prefilled in groups, left-padded, the prefix
    reused), decoded as one batch (one kernel tile of 8 rows and one of 3), grouped-query
    attention made sharp; rows finish at different steps and the last rows move into their
    slots. After the prefill and every step, each row's logits stay within int8 error of the
    fp32 model run on that row alone, and several times closer to it than to the same row one
    column off. (Measured: rotating by the cache column instead of the position, a prefill one
    position off, or attending to padding columns, fails this.)"""
    model, _, layout = gqa_lm
    model = copy.deepcopy(model)
    with torch.no_grad():  # sharp attention, so that a wrong position or column shows in the logits
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight *= 4
            layer.self_attn.k_proj.weight *= 4
    engine = build_engine("native", model, layout, max_batch=11)
    assert isinstance(engine.decode_step, native_engine.NativeForward)
    dec = engine.decoder(capacity=64)
    gen = torch.Generator().manual_seed(0)
    shared = torch.randint(3, 400, (8,), generator=gen).tolist()  # half the prompts share a prefix
    rows = [(shared if i % 2 else []) + torch.randint(3, 400, (int(n),), generator=gen).tolist()
            for i, n in enumerate(torch.randint(2, 20, (11,), generator=gen))]
    budgets = [6, 2, 4, 6, 1, 5, 6, 3, 6, 2, 6]
    slots = dec.prefill_many([Request(r, GREEDY.with_(max_new_tokens=b)) for r, b in zip(rows, budgets)])
    assert dec.prefixes.hits > 0  # a later group's prefill started after the shared prefix
    seen = {id(s): list(r) for s, r in zip(slots, rows)}
    worst, steps = 0.0, -1
    while dec.rows:
        if steps >= 0:
            dec.step()
        steps += 1
        for slot, logits in zip(dec.rows, dec.logits):
            want = _fp32_last_logits(model, seen[id(slot)] + slot.out)
            worst = max(worst, _relative_error(logits, want))
            shifted = _fp32_last_logits(model, seen[id(slot)][1:] + slot.out)  # one column off
            assert _relative_error(logits, shifted) > 3 * _relative_error(logits, want)
    assert worst < 0.05, worst
    assert steps >= 5 and [len(s.result.ids) for s in slots] == budgets


def _prefilled(lean, rows: int = 3, length: int = 9):
    """A cache of `rows` random prompts of `length` tokens, through lean's torch forward."""
    cache = lean.new_cache(rows, 32)
    ids = torch.randint(3, 400, (rows, length), generator=torch.Generator().manual_seed(1))
    lean.forward(ids, torch.arange(length).repeat(rows, 1), cache)
    return cache


def test_a_sub_head_gives_exactly_the_full_heads_logits_on_its_ids(compact_lm):
    model, _, layout = compact_lm
    engine = Engine(model, layout, quantize="int8")  # sets the int8 sub-heads of the segment classes
    lean = engine.model
    cache = _prefilled(lean)
    step = native_engine.NativeForward(lean)
    nxt, pos = torch.tensor([[5], [6], [7]]), torch.full((3, 1), 9)
    full = step(nxt, pos, cache)
    assert len(lean.head_groups) >= 2
    for g, (group_ids, _) in enumerate(lean.head_groups):
        cache.length = 9
        part = step(nxt, pos, cache, head_group=g)
        assert torch.equal(part[:, group_ids], full[:, group_ids])
        outside = torch.ones(lean.vocab_size, dtype=torch.bool)
        outside[group_ids] = False
        assert bool(torch.isneginf(part[:, outside]).all())


def test_the_portable_build_computes_what_the_native_build_does(compact_lm):
    """Without -march=native the kernel takes its plain-C++ path (no AVX-512 VNNI): the same
    int8 sums, float sums in another order."""
    model, _, _ = compact_lm
    lean = LeanLlama(model)
    quantize_lean(lean, "int8")
    cache = _prefilled(lean)
    flags = tuple(f for f in native_engine.FLAGS if f != "-march=native")
    portable = native_engine.build_library(flags)
    nxt, pos = torch.tensor([[5], [6], [7]]), torch.full((3, 1), 9)
    a = native_engine.NativeForward(lean)(nxt, pos, cache)
    cache.length = 9
    b = native_engine.NativeForward(lean, lib=portable)(nxt, pos, cache)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
    # built into this module's cache (the process's native library may sit in another module's)
    built = native_engine.library_path(native_engine.compiler(), flags)
    assert built.exists() and str(built).startswith(os.environ["ANYGPT_CACHE"])


def test_generations_are_all_well_formed(compact_lm):
    model, _, layout = compact_lm
    engine = build_engine("native", model, layout, max_batch=25)
    bias = marker_bias(layout, model.config.vocab_size)
    assert_generations_well_formed(engine, layout, marker_requests(100, bias), bias)


def test_without_a_compiler_the_message_names_one_and_auto_falls_back(compact_lm, monkeypatch, tmp_path,
                                                                   without_onnxruntime):
    model, _, layout = compact_lm
    monkeypatch.setattr(native_engine, "_LIBRARY", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(BackendUnavailable, match="needs a C.. compiler.*g\\+\\+"):
        build_engine("native", model, layout)
    fallback = build_engine("auto", model, layout, quantize="int8")
    assert type(fallback) is Engine and fallback.quantize == "int8"


def test_native_runs_int8_llamas_only(compact_lm, monkeypatch):
    model, _, layout = compact_lm
    assert build_engine("native", model, layout).quantize == "int8"
    with pytest.raises(Exception, match="int8 only"):
        build_engine("native", model, layout, quantize="int4")
    monkeypatch.setattr(model.config, "hidden_act", "gelu")
    with pytest.raises(BackendUnavailable, match="engine 'native' cannot hold this model: its hidden_act is 'gelu'"):
        build_engine("native", model, layout)


def test_a_ragged_step_stays_one_call(compact_lm, monkeypatch):
    """Each row attends to its own columns only, so rows of very different lengths are one
    call a step (the torch engine splits them in two: tests/lm/test_prefill_many.py)."""
    from anygpt.lm import engine as engine_module

    model, _, layout = compact_lm
    engine = build_engine("native", model, layout, max_batch=5)
    monkeypatch.setattr(engine_module, "SPLIT_COLUMNS", 0)  # the torch engine would split now
    calls = []
    step = engine.decode_step
    monkeypatch.setattr(engine, "decode_step", lambda *a, **k: calls.append(a[0].shape[0]) or step(*a, **k))
    dec = engine.decoder()
    dec.prefill(Request(list(range(5, 70)), GREEDY))
    dec.prefill_many([Request([5 + i, 6, 7], GREEDY) for i in range(4)])
    while dec.rows:
        dec.step()
    assert calls[0] == 5 and len(calls) == GREEDY.max_new_tokens - 1
