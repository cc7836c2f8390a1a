"""The decoder contract (anygpt.lm.decoder) as the engine implements it: requests join a
running batch and leave it at step boundaries, each with the tokens it gets alone; a failing
streamer or a cancel ends only its own request; slots are freed as requests finish."""

from __future__ import annotations

import pytest

from anygpt.lm.decoder import Decoder, EngineError, RequestFailed
from anygpt.lm.engine import Engine, Request
from anygpt.lm.generation import GenerationSettings

SAMPLE = GenerationSettings(max_new_tokens=30, do_sample=True, temperature=1.2, top_k=40, repetition_penalty=1.1,
                            constrained=True)


@pytest.fixture(scope="module")
def engine(compact_lm):
    model, _, layout = compact_lm
    return Engine(model, layout, max_batch=3, max_len=128)


def alone(engine, prompt, seed, settings=SAMPLE):
    return engine.generate([Request(prompt, settings, generator=seed)])[0].ids


def run(dec, joins: dict[int, list]) -> dict[int, list[int]]:
    """Step `dec` until idle; joins[k]: (name, request) pairs prefilled before step k -> ids by name."""
    out, names, step = {}, {}, 0
    while dec.running or any(k >= step for k in joins):
        for name, request in joins.get(step, []):
            names[id(dec.prefill(request))] = name
        for done in dec.step():
            out[names[id(done)]] = done.result.ids
        step += 1
    return out


def test_requests_joining_a_running_batch_get_the_tokens_they_get_alone(engine):
    prompts = {"a": [5, 6, 7, 8], "b": list(range(3, 40)), "c": [9, 10], "d": [11, 12, 13]}
    want = {k: alone(engine, p, seed=i) for i, (k, p) in enumerate(prompts.items())}
    dec = engine.decoder()
    assert isinstance(dec, Decoder)
    joins = {0: [("a", Request(prompts["a"], SAMPLE, generator=0))],
             3: [("b", Request(prompts["b"], SAMPLE, generator=1)), ("c", Request(prompts["c"], SAMPLE, generator=2))],
             31: [("d", Request(prompts["d"], SAMPLE, generator=3))]}
    got = run(dec, joins)
    assert got == want
    assert dec.running == 0 and dec.has_room


def test_a_full_decoder_refuses_a_fourth_request_and_frees_slots_as_requests_finish(engine):
    short = GenerationSettings(max_new_tokens=2, do_sample=False, constrained=False)
    long = GenerationSettings(max_new_tokens=20, do_sample=False, constrained=False)
    dec = engine.decoder()
    slots = [dec.prefill(Request([5, 6], short)), dec.prefill(Request([7, 8], long)), dec.prefill(Request([9], long))]
    with pytest.raises(EngineError, match="no free slot"):
        dec.prefill(Request([4], long))
    dec.step()
    done = dec.step()
    assert done == [slots[0]] and dec.running == 2 and dec.has_room
    joined = dec.prefill(Request([4, 4, 4], short))
    while dec.running:
        dec.step()
    assert [len(s.result.ids) for s in slots] == [2, 20, 20] and len(joined.result.ids) == 2
    dec.close()


def test_a_failing_streamer_or_a_cancel_ends_only_its_request(engine):
    class Boom:
        def __init__(self):
            self.ends = 0

        def put(self, ids):
            raise RuntimeError("boom")

        def end(self):
            self.ends += 1

    boom = Boom()
    dec = engine.decoder()
    bad = dec.prefill(Request([5, 6], SAMPLE, generator=1, streamer=boom))
    cancelled = dec.prefill(Request([5, 6, 7], SAMPLE, generator=2))
    good = dec.prefill(Request([7, 8, 9], SAMPLE, generator=3))
    with pytest.raises(RequestFailed) as e:
        dec.step()
    assert e.value.slot is bad and boom.ends == 1 and dec.running == 2
    dec.cancel(cancelled)
    while dec.running:
        dec.step()
    assert cancelled.result.finish_reason == "cancelled" and len(cancelled.result.ids) == 1
    assert good.result.ids == alone(engine, [7, 8, 9], seed=3)


def test_a_bad_request_fails_at_prefill_and_leaves_the_batch_alone(engine):
    dec = engine.decoder()
    good = dec.prefill(Request([7, 8, 9], SAMPLE, generator=3))
    with pytest.raises(EngineError, match="tokens long"):
        dec.prefill(Request(list(range(3, 203)), SAMPLE))
    with pytest.raises(EngineError, match="prompt ids"):
        dec.prefill(Request([5, 10**6], SAMPLE))
    while dec.running:
        dec.step()
    assert good.result.ids == alone(engine, [7, 8, 9], seed=3)
