"""ContinuousBatch.step(adopt=...): rows prefilled in a second decoder and given their first
token there (step(feed=False)), on another thread while the first decoder steps its own rows,
join the first batch and go on with exactly the tokens each request gets in one decoder; the
second decoder is left empty and reusable; what cannot join is refused with a clear message and
nothing moves. On the torch engine and on the native (C++) one, whose forward two threads then
call at once."""

from __future__ import annotations

import threading

import pytest

from anygpt.lm.backends import build_engine
from anygpt.lm.engine import AdoptionRefused, Engine, Request
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
def test_rows_left_unfed_join_through_the_next_steps_forward(compact_lm, backend, settings):
    """The server's way: the joining rows' first step stops before its forward (feed=False), and
    the running batch feeds their chosen tokens in its own next forward (step(adopt=...)). Also
    when the batch has no rows of its own, and when every joining row ended at its first token."""
    engine = engines(compact_lm)[backend]
    requests = [Request(p, settings, generator=i) for i, p in enumerate(RUNNING + JOINING)]
    one = engine.decoder()
    want = finish(one, one.prefill_many(requests))

    main, staging = engine.decoder(), engine.decoder()
    running = main.prefill_many(requests[:len(RUNNING)])
    main.step()
    joined = []

    def intake():
        joined.extend(staging.prefill_many(requests[len(RUNNING):]))
        staging.step(feed=False)

    thread = threading.Thread(target=intake)
    thread.start()
    for _ in range(3):
        main.step()
    thread.join()
    assert staging.unfed and [s.out[0] for s in joined] == [w[0] for w in want[len(RUNNING):]]  # streamed
    main.step(adopt=[staging])
    assert main.running == len(requests) and staging.running == 0 and not staging.unfed
    assert finish(main, running + joined) == want

    alone = staging.prefill_many(requests[:1])  # into an idle batch
    staging.step(feed=False)
    idle = engine.decoder()
    idle.step(adopt=[staging])
    assert finish(idle, alone) == want[:1]

    one_token = Request(JOINING[1], settings.with_(max_new_tokens=1), generator=1)
    ended = staging.prefill_many([one_token])
    assert staging.step(feed=False) == ended and staging.running == 0
    assert finish(staging, staging.prefill_many(requests[len(RUNNING):])) == want[len(RUNNING):]  # reusable


def test_what_cannot_join_is_refused_and_nothing_moves(compact_lm):
    built = engines(compact_lm, max_batch=3)
    engine = built["torch"]
    main, staging = engine.decoder(), engine.decoder()
    main.prefill_many([Request(p, GREEDY) for p in RUNNING[:2]])
    staging.prefill_many([Request(p, GREEDY) for p in JOINING[:2]])
    with pytest.raises(AdoptionRefused, match="must wait with their chosen tokens"):
        main.step(adopt=[staging])
    staging.step(feed=False)
    before = [list(s.out) for s in main.rows]
    with pytest.raises(AdoptionRefused, match="no free slot: 2 requests are running, 2 more would pass max_batch 3"):
        main.step(adopt=[staging])
    assert [list(s.out) for s in main.rows] == before and (main.running, staging.running) == (2, 2)
    with pytest.raises(AdoptionRefused, match="same engine"):
        built["native"].decoder().step(adopt=[staging])
    engine.concurrent = False
    try:
        with pytest.raises(AdoptionRefused, match="concurrent"):
            engine.decoder().step(adopt=[staging])
    finally:
        engine.concurrent = True
    assert main.step(adopt=[engine.decoder()]) == [] and main.running == 2  # an empty one: nothing joins
