"""Batched prefill (ContinuousBatch.prefill_many) and the prefix cache: requests prefilled
together, or starting from a stored prompt's keys/values, get the tokens they get when each is
prefilled alone from scratch; a bad request in a group fails alone."""

from __future__ import annotations

import pytest
import torch

from anygpt.lm.decoder import EngineError
from anygpt.lm import engine as engine_module
from anygpt.lm.engine import Engine, Request, _groups, _Joining, _split
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.prefix_cache import PrefixCache

GREEDY = GenerationSettings(max_new_tokens=12, do_sample=False, constrained=True)
SAMPLE = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.1, top_k=30, repetition_penalty=1.1,
                            constrained=True)
SYSTEM = list(range(20, 45))  # a shared "system prompt" of 25 ids
PROMPTS = [SYSTEM + [7, 8, 9], SYSTEM + [11], [5, 6, 7], SYSTEM + [12, 13, 14, 15, 16, 17], list(range(60, 100)),
           SYSTEM[:10]]


@pytest.fixture(scope="module")
def engine(compact_lm):
    model, _, layout = compact_lm
    return Engine(model, layout, max_batch=8, max_len=128)


def finish(dec) -> dict[int, list[int]]:
    """Step until idle -> new ids by slot id."""
    out = {}
    while dec.running:
        for done in dec.step():
            out[id(done)] = done.result.ids
    return out


def one_by_one(engine, requests, prefix_tokens=0):
    dec = engine.decoder(prefix_tokens=prefix_tokens)
    slots = [dec.prefill(r) for r in requests]
    logits = dec.logits.clone()
    ids = finish(dec)
    return [ids[id(s)] for s in slots], logits


@pytest.mark.parametrize("settings", [GREEDY, SAMPLE], ids=["greedy", "sampled"])
def test_prefill_many_gives_each_request_the_tokens_of_a_prefill_alone(engine, settings):
    requests = [Request(p, settings, generator=i) for i, p in enumerate(PROMPTS)]
    want, want_logits = one_by_one(engine, requests)
    dec = engine.decoder(prefix_tokens=0)
    slots = dec.prefill_many(requests)
    assert all(s.prompt_len == len(p) for s, p in zip(slots, PROMPTS))
    assert any(s.offset for s in slots)  # some were left-padded into a shared forward
    # rows join in group order; compare each request's logits with its own row's
    rows = [dec.rows.index(s) for s in slots]
    torch.testing.assert_close(dec.logits[rows], want_logits, atol=1e-4, rtol=1e-4)
    ids = finish(dec)
    assert [ids[id(s)] for s in slots] == want


def test_a_stored_prefix_gives_the_tokens_of_a_prefill_from_scratch(engine):
    first = [Request(SYSTEM + [3, 4], GREEDY, generator=0)]
    later = [Request(p, GREEDY, generator=i) for i, p in enumerate(PROMPTS)]
    want, _ = one_by_one(engine, later)
    dec = engine.decoder()  # the default prefix cache
    dec.prefill_many(first)
    finish(dec)
    assert dec.prefixes.hits == 0 and len(dec.prefixes) == 1
    slots = dec.prefill_many(later)
    ids = finish(dec)
    assert [ids[id(s)] for s in slots] == want
    # the 4 prompts that start with SYSTEM (or its first 10 ids) reused them
    assert dec.prefixes.hits >= 4 and dec.prefixes.reused >= 3 * len(SYSTEM) + 9
    # a prompt already stored whole is computed from its last id only, and still gets its tokens
    again = dec.prefill(Request(PROMPTS[0], GREEDY, generator=0))
    assert finish(dec)[id(again)] == want[0]


def test_a_burst_computes_its_shared_prefix_once(engine, monkeypatch):
    """Prompts that arrive together and share a prefix nobody stored yet: the first forward
    stores it and the later groups start from it (the columns computed drop), with the tokens of
    prefills from scratch."""
    burst = [SYSTEM + [7], SYSTEM + list(range(50, 80)), SYSTEM + list(range(50, 100)), SYSTEM + [9] * 60]
    requests = [Request(p, GREEDY, generator=i) for i, p in enumerate(burst)]
    want, _ = one_by_one(engine, requests)
    computed = []
    forward = engine.model.forward
    monkeypatch.setattr(engine.model, "forward", lambda ids, *a, **k: computed.append(ids.numel()) or forward(ids, *a, **k))
    dec = engine.decoder()
    slots = dec.prefill_many(requests)
    prefill_columns = sum(computed)
    ids = finish(dec)
    assert [ids[id(s)] for s in slots] == want
    assert dec.prefixes.hits == 3 and dec.prefixes.reused >= 3 * len(SYSTEM)
    assert prefill_columns <= sum(map(len, burst)) - dec.prefixes.reused


def test_one_by_one_prefill_with_the_prefix_cache_matches_from_scratch(engine):
    requests = [Request(p, SAMPLE, generator=i) for i, p in enumerate(PROMPTS)]
    want, _ = one_by_one(engine, requests)
    got, _ = one_by_one(engine, requests, prefix_tokens=None)
    assert got == want


def test_a_bad_request_in_the_group_fails_alone(engine):
    good = [Request(SYSTEM + [7], GREEDY, generator=1), Request([5, 6, 7], GREEDY, generator=2)]
    want, _ = one_by_one(engine, good)
    bad_ids = Request([1, 10_000], GREEDY)  # an id out of the vocabulary
    empty = Request([], GREEDY)
    beams = Request([5], GenerationSettings(num_beams=2, do_sample=False))
    dec = engine.decoder()
    out = dec.prefill_many([bad_ids, good[0], empty, beams, good[1]])
    assert isinstance(out[0], EngineError) and "prompt ids" in str(out[0])
    assert isinstance(out[2], EngineError) and "empty prompt" in str(out[2])
    assert isinstance(out[3], ValueError) and "num_beams" in str(out[3])
    assert dec.running == 2
    ids = finish(dec)
    assert [ids[id(out[1])], ids[id(out[4])]] == want


def test_requests_past_the_free_slots_are_refused_one_by_one(compact_lm):
    model, _, layout = compact_lm
    engine = Engine(model, layout, max_batch=3, max_len=64)
    dec = engine.decoder()
    dec.prefill(Request([5, 6], GREEDY))
    out = dec.prefill_many([Request([7], GREEDY), Request([8, 9], GREEDY), Request([10], GREEDY)])
    assert [isinstance(o, EngineError) for o in out] == [False, False, True]
    assert "no free slot" in str(out[2]) and dec.running == 3
    with pytest.raises(EngineError, match="no free slot"):
        dec.prefill(Request([4], GREEDY))


def test_a_request_whose_budget_padding_would_cut_runs_in_its_own_group(compact_lm):
    model, _, layout = compact_lm
    engine = Engine(model, layout, max_batch=4, max_len=40)
    fill = GenerationSettings(max_new_tokens=100, do_sample=False, constrained=False)  # cut to 40 - prompt
    requests = [Request(list(range(5, 25)), GREEDY), Request([5, 6, 7], fill)]
    want, _ = one_by_one(engine, requests)
    dec = engine.decoder(prefix_tokens=0)
    slots = dec.prefill_many(requests)
    assert [s.offset for s in slots] == [0, 0]  # not left-padded to the 20-id prompt
    ids = finish(dec)
    assert [ids[id(s)] for s in slots] == want
    assert len(want[1]) == 40 - 3 and slots[1].result.finish_reason == "length"


def test_groups_join_prompts_of_similar_length_and_keep_budgets_whole():
    def joining(n, max_new=8, capacity=100):
        return _Joining(0, Request(list(range(1, n + 1)), GenerationSettings(max_new_tokens=max_new)),
                        torch.arange(1, n + 1), capacity)

    sizes = [[j.n for j in g] for g in _groups([joining(n) for n in (10, 12, 11, 40, 41)])]
    assert sizes == [[10, 11, 12], [40, 41]]
    # a member whose budget needs every column after its own prompt cannot be left-padded
    assert [[j.n for j in g] for g in _groups([joining(10, max_new=90), joining(12)])] == [[10], [12]]
    assert [[j.n for j in g] for g in _groups([joining(10), joining(12, max_new=88)])] == [[10, 12]]


def test_prefix_cache_keeps_the_longest_prefixes_within_its_token_budget():
    kv = lambda n: ([torch.full((1, n, 2), float(n))], [torch.zeros(1, n, 2)])  # noqa: E731
    cache = PrefixCache(max_tokens=10)
    cache.put((1, 2, 3), *kv(3))
    cache.put((1, 2, 3, 4, 5), *kv(5))  # extends the first: replaces it
    assert len(cache) == 1 and cache.tokens == 5
    cache.put((1, 2), *kv(2))  # a prefix of a stored one: nothing new
    assert len(cache) == 1
    p, entry = cache.lookup((1, 2, 3, 9))
    assert p == 3 and entry.ids == (1, 2, 3, 4, 5)
    assert cache.lookup((7, 1, 2)) == (0, None)
    cache.put((7, 8, 9, 10), *kv(4))
    cache.put((5, 5), *kv(2))  # 5 + 4 + 2 > 10: the least recently used entry goes
    assert [e.ids for e in cache.entries.values()] == [(7, 8, 9, 10), (5, 5)]
    cache.put(tuple(range(11)), *kv(11))  # longer than the whole budget: not stored
    assert cache.tokens == 6
    assert PrefixCache(0).put((1,), *kv(1)) is None and len(PrefixCache(0)) == 0


def test_split_decodes_wide_and_narrow_rows_apart_only_when_it_saves_reading():
    assert _split([1000] * 8 + [60] * 24) == [(0, 8), (8, 32)]
    assert _split([60] * 24 + [1000] * 8) == [(0, 24), (24, 32)]
    assert _split([50, 60, 55]) == [(0, 3)]
    assert _split([7]) == [(0, 1)]


def test_a_split_decode_step_gives_each_row_its_tokens_alone(engine, monkeypatch):
    long = Request(list(range(5, 70)), SAMPLE, generator=9)
    short = [Request(p, SAMPLE, generator=i) for i, p in enumerate(PROMPTS[:4])]
    want, _ = one_by_one(engine, [long] + short)  # one forward a step
    monkeypatch.setattr(engine_module, "SPLIT_COLUMNS", 0)  # split whenever it reads fewer columns
    calls = []
    monkeypatch.setattr(engine, "decode_step", lambda *a, **k: calls.append(a[0].shape[0]) or engine.model(*a, **k))
    dec = engine.decoder(prefix_tokens=0)
    slots = [dec.prefill(long)] + dec.prefill_many(short)
    ids = finish(dec)
    assert [ids[id(s)] for s in slots] == want
    assert calls[:2] == [1, 4]  # the long row, then the 4 short ones
