"""ContinuousBatch.adopt: rows prefilled and stepped in a second decoder, on another thread while
the first decoder steps its own rows, join the first batch and go on with exactly the tokens each
request gets in one decoder; the second decoder is left empty and reusable; what cannot join is
refused with a clear message. On the torch engine and on the native (C++) one, whose forward two
threads then call at once."""

from __future__ import annotations

import threading

import pytest

from anygpt.lm.backends import build_engine
from anygpt.lm.decoder import EngineError
from anygpt.lm.engine import Engine, Request
from anygpt.lm.generation import GenerationSettings

pytestmark = pytest.mark.usefixtures("temporary_export_cache")

GREEDY = GenerationSettings(max_new_tokens=10, do_sample=False, constrained=True)
SAMPLE = GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.1, top_k=30, repetition_penalty=1.1,
                            constrained=True)
RUNNING = [list(range(20, 45)) + [7, 8], [5, 6, 7], list(range(60, 90))]
JOINING = [list(range(20, 45)) + [11], [9, 10, 11, 12], list(range(100, 110))]


def engines(compact_lm, max_batch=6):
    model, _, layout = compact_lm
    return {"torch": Engine(model, layout, max_batch=max_batch, max_len=128),
            "native": build_engine("native", model, layout, max_batch=max_batch, max_len=128)}


def finish(dec, slots) -> list[list[int]]:
    while dec.running:
        dec.step()
    return [s.result.ids for s in slots]


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("settings", [GREEDY, SAMPLE], ids=["greedy", "sampled"])
def test_rows_stepped_on_another_thread_join_with_the_tokens_of_one_decoder(compact_lm, backend, settings):
    engine = engines(compact_lm)[backend]
    requests = [Request(p, settings, generator=i) for i, p in enumerate(RUNNING + JOINING)]
    one = engine.decoder()
    want = finish(one, one.prefill_many(requests))

    main, staging = engine.decoder(), engine.decoder()
    running = main.prefill_many(requests[:len(RUNNING)])
    main.step()
    joined, first = [], []

    def intake():  # prefill and first step of the joining requests, while main steps on
        joined.extend(staging.prefill_many(requests[len(RUNNING):]))
        staging.step()
        first.extend(s.out[0] for s in joined)

    thread = threading.Thread(target=intake)
    thread.start()
    for _ in range(3):
        main.step()
    thread.join()
    adopted = main.adopt(staging)
    assert {id(s) for s in adopted} == {id(s) for s in joined}  # in row order, prefill's groups first
    assert main.running == len(requests) and staging.running == 0
    assert first == [w[0] for w in want[len(RUNNING):]]  # streamed before they joined
    assert finish(main, running + joined) == want

    again = staging.prefill_many(requests[len(RUNNING):])  # the emptied decoder takes new rows
    assert finish(staging, again) == want[len(RUNNING):]


def test_what_cannot_join_is_refused_and_nothing_moves(compact_lm):
    built = engines(compact_lm, max_batch=3)
    engine = built["torch"]
    main, staging = engine.decoder(), engine.decoder()
    main.prefill_many([Request(p, GREEDY) for p in RUNNING[:2]])
    staging.prefill_many([Request(p, GREEDY) for p in JOINING[:2]])
    with pytest.raises(EngineError, match="no free slot: 2 requests are running, 2 more would pass max_batch 3"):
        main.adopt(staging)
    assert (main.running, staging.running) == (2, 2)
    with pytest.raises(EngineError, match="same engine"):
        built["native"].decoder().adopt(staging)
    engine.concurrent = False
    try:
        with pytest.raises(EngineError, match="concurrent"):
            engine.decoder().adopt(staging)
    finally:
        engine.concurrent = True
    assert main.adopt(engine.decoder()) == []
