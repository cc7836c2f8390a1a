"""Issue 27's isolation test: 32 concurrent clients, a quarter of them hostile (bad numbers,
huge bodies, media bombs), against a server in its own process on 127.0.0.1. Every well-formed
request gets the answer it gets without the hostile ones, every hostile one is refused, and the
server's peak resident memory stays within 1.5x of its idle memory. (The latencies of the same
run are benchmarks/bench_isolation.py's table; timings are never asserted here.)"""

from __future__ import annotations

from anygpt.serve.loadgen import ServerProcess, isolation_run


def test_hostile_clients_hurt_no_well_formed_request_and_no_memory():
    with ServerProcess("random-64x2-media", timeout=600) as srv:
        run = isolation_run(srv, clients=32, hostile_share=0.25, per_client=2, timeout=300)
    quiet = {o.name: o.answer for o in run.good(run.quiet)}
    loaded = run.good(run.loaded)
    assert len(quiet) == 48 and all(a is not None for a in quiet.values())
    assert len(loaded) == 48
    for o in loaded:
        assert o.problem is None and o.answer == quiet[o.name], (o.name, o.problem)
    hostile = [o for o in run.loaded if o.kind == "hostile"]
    assert len(hostile) == 16 and [o for o in hostile if o.problem] == []
    assert run.peak_rss <= 1.5 * run.idle_rss, (run.peak_rss / 2**20, run.idle_rss / 2**20)
