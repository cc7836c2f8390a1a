"""The incremental segment state (engine) agrees with a rescan of the ids (HF adapter) at every
step, and constrained generation through the engine writes well-formed segments (property)."""

from __future__ import annotations

import torch

from anygpt.errors import ModelOutputError
from anygpt.lm.constraints import SegmentConstraint, SegmentState, SegmentTables
from anygpt.lm.engine import Engine, Request
from anygpt.lm.generation import GenerationSettings


def well_formed(layout, ids):
    try:
        layout.parse_ids(ids, lambda run: "t", strict=True)
        return True
    except ModelOutputError:
        return False


def marker_bias(layout, vocab):
    """Pushes a random model towards markers and codes, so that unconstrained sampling is
    malformed often and the constraint decides at many steps."""
    bias = torch.zeros(vocab)
    for r in layout.ranges.values():
        bias[r.code_offset:r.code_end] = 2.0
        bias[[r.start_id, r.end_id]] = 7.0
    return bias


def test_incremental_state_matches_rescan_every_step(compact_lm):
    """Random token streams (any ids, so also malformed ones) with budgets and max_frames."""
    _, tok, layout = compact_lm
    vocab = len(tok) + 5
    tables = SegmentTables(layout, vocab)
    g = torch.Generator().manual_seed(0)
    b, steps, budget = 16, 60, 70
    ids = torch.randint(3, 200, (b, 4), generator=g)
    ids[::4, -1] = layout["music"].start_id  # some rows start inside a segment
    limits = tables.frame_limits({"speech": 3}, b)
    state = SegmentState(tables, ids, torch.full((b,), budget), limits)
    adapter = SegmentConstraint(layout, max_length=4 + budget, max_frames={"speech": 3})
    for _ in range(steps):
        want = adapter.allowed(ids, vocab)
        assert torch.equal(state.allowed(), want)
        # follow the allowed set most of the time, and break it sometimes
        pick = torch.multinomial(want.float() + 0.02, 1, generator=g)[:, 0]
        state.advance(pick)
        ids = torch.cat([ids, pick[:, None]], dim=1)


def marker_requests(n: int, bias, seed: int = 1) -> list[Request]:
    """n sampled 48-token requests on random text prompts of 2-8 ids, pushed by `bias` towards
    markers, speech limited to 3 frames: the inputs of assert_generations_well_formed."""
    settings = GenerationSettings(max_new_tokens=48, do_sample=True, max_frames={"speech": 3})
    g = torch.Generator().manual_seed(seed)
    return [Request(torch.randint(3, 400, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g),
                    settings, generator=i, logit_bias=bias) for i in range(n)]


def assert_generations_well_formed(engine, layout, requests, bias) -> None:
    """Sampled 48-token generations of `requests` (a marker-favouring logit `bias`) are all
    well-formed and open and close every modality many times; the first 25 unconstrained are
    not (so the check is not vacuous)."""
    rows = [r.ids for r in engine.generate(requests)]
    assert all(len(r) == 48 for r in rows)
    assert [i for i, r in enumerate(rows) if not well_formed(layout, r)] == []
    flat = torch.tensor(rows)
    for r in layout.ranges.values():
        assert int((flat == r.start_id).sum()) > 20, r.name
        assert int((flat == r.end_id).sum()) > 20, r.name
    loose = GenerationSettings(max_new_tokens=48, do_sample=True, constrained=False)
    free = engine.generate([Request(q.prompt, loose, generator=i, logit_bias=bias)
                            for i, q in enumerate(requests[:25])])
    assert sum(not well_formed(layout, r.ids) for r in free) > 10


def test_200_engine_generations_are_all_well_formed(compact_lm):
    model, tok, layout = compact_lm
    engine = Engine(model, layout, max_batch=25)
    bias = marker_bias(layout, model.config.vocab_size)
    settings = GenerationSettings(max_new_tokens=48, do_sample=True)
    g = torch.Generator().manual_seed(1)
    requests = [Request(torch.randint(3, 400, (5,), generator=g), settings, generator=i, logit_bias=bias)
                for i in range(200)]
    assert_generations_well_formed(engine, layout, requests, bias)


def test_mixed_batch_constrains_only_constrained_rows(compact_lm):
    model, _, layout = compact_lm
    bias = marker_bias(layout, model.config.vocab_size)
    on = GenerationSettings(max_new_tokens=40)
    off = GenerationSettings(max_new_tokens=40, constrained=False)
    reqs = [Request([5, 6, 7], on if i % 2 else off, generator=i, logit_bias=bias) for i in range(12)]
    out = Engine(model, layout, max_batch=12).generate(reqs)
    assert all(well_formed(layout, r.ids) for r in out[1::2])
    assert not all(well_formed(layout, r.ids) for r in out[0::2])
