"""Property test: whatever the weights, constrained generation writes well-formed segments."""

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from anygpt.errors import ModelOutputError
from anygpt.lm.constraints import SegmentConstraint
from anygpt.lm.generation import GenerationSettings, generate_ids
from anygpt.lm.tiny import random_tiny
from anygpt.modalities import released_specs
from anygpt.token_spec import TokenSpec

COMPACT = [
    TokenSpec("image", "\U0001F440", "<soim>", "<eoim>", 64, 1, 8),
    TokenSpec("speech", "\U0001F5E3\uFE0F", "<sosp>", "<eosp>", 32, 1),
    TokenSpec("music", "\U0001F3B6", "<somu>", "<eomu>", 16, 4),
]


class Adversary(LogitsProcessor):
    """Pushes a random model towards markers, end markers and codes of every modality, so that
    unconstrained sampling is malformed often and the constraint is exercised at every step."""

    def __init__(self, layout, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.boost = torch.zeros(layout.vocab_size)
        for r in layout.ranges.values():
            self.boost[r.code_offset:r.code_end] = 2.0
            self.boost[[r.start_id, r.end_id]] = 7.0

    def __call__(self, input_ids, scores):
        noise = torch.rand(scores.shape, generator=self.g) * 6
        return scores + noise + self.boost[: scores.shape[1]]


def sample(model, layout, *, constrained, seed, batch=25, new=48, beams=1, max_frames=None):
    torch.manual_seed(seed)
    prompt = torch.randint(3, 400, (batch, 5))  # plain text ids
    procs = LogitsProcessorList([Adversary(layout, seed)])
    if constrained:
        procs.append(SegmentConstraint(layout, max_length=prompt.shape[1] + new, max_frames=max_frames))
    cfg = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=beams == 1, num_beams=beams,
                           top_k=None, pad_token_id=0, eos_token_id=None)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=cfg,
                         logits_processor=procs)
    return out[:, prompt.shape[1]:]


def well_formed(layout, ids):
    try:
        layout.parse_ids(ids.tolist(), lambda run: "t", strict=True)
        return True
    except ModelOutputError:
        return False


@pytest.fixture(scope="module")
def compact():
    return random_tiny(COMPACT, seed=1, text_vocab=500)


@pytest.fixture(scope="module")
def released():
    return random_tiny(released_specs(), seed=2, text_vocab=500)


def count_segments(layout, rows):
    starts = torch.tensor([r.start_id for r in layout.ranges.values()])
    return int(torch.isin(rows, starts).sum())


def test_200_constrained_generations_are_all_well_formed(compact):
    model, _, layout = compact
    rows = torch.cat([sample(model, layout, constrained=True, seed=s) for s in range(8)])  # 8 x 25 = 200
    assert rows.shape[0] == 200
    bad = [i for i, r in enumerate(rows) if not well_formed(layout, r)]
    assert bad == []
    # the property is not vacuous: every modality was entered many times
    for r in layout.ranges.values():
        assert int((rows == r.start_id).sum()) > 20, r.name
        assert int((rows == r.end_id).sum()) > 20, r.name


def test_unconstrained_generations_are_malformed_often(compact):
    model, _, layout = compact
    rows = sample(model, layout, constrained=False, seed=0)
    assert sum(not well_formed(layout, r) for r in rows) > 10


def test_released_layout_fixed_image_count_and_music_frames(released):
    model, _, layout = released
    rows = torch.cat([sample(model, layout, constrained=True, seed=s, batch=10, new=80) for s in range(3)])
    assert all(well_formed(layout, r) for r in rows)
    parts = [p for r in rows for p in layout.parse_ids(r.tolist(), lambda run: "t")]
    images = [p for p in parts if getattr(p, "modality", None) == "image"]
    music = [p for p in parts if getattr(p, "modality", None) == "music"]
    assert images and all(p.codes.shape == (1, 32) for p in images)
    assert music and all(p.codes.shape[0] == 4 for p in music)


def test_beam_search_is_constrained(compact):
    model, _, layout = compact
    rows = sample(model, layout, constrained=True, seed=5, batch=4, beams=3)
    assert all(well_formed(layout, r) for r in rows)


def test_budget_closes_segments_and_max_frames(compact):
    model, tok, layout = compact
    sp = layout["speech"]
    prompt = torch.tensor([[5, 6, 7, sp.start_id]])
    settings = GenerationSettings(max_new_tokens=10, max_frames={"speech": 4})
    new = generate_ids(model, prompt, torch.ones_like(prompt), layout, settings, stop_ids=[2], pad_id=0, seed=0)[0]
    ids = [sp.start_id] + new.tolist()
    seg_end = ids.index(sp.end_id)
    assert 1 <= seg_end - 1 <= 4  # 1..4 codes, then the end marker
    # a budget too small for a whole image never starts one
    proc = SegmentConstraint(layout, max_length=8)
    allowed = proc.allowed(torch.tensor([[5, 6]]), len(tok))
    assert not allowed[0, layout["image"].start_id] and allowed[0, layout["speech"].start_id]


def test_max_frames_zero_forbids_a_modality(compact):
    model, tok, layout = compact
    proc = SegmentConstraint(layout, max_frames={"image": 0})
    allowed = proc.allowed(torch.tensor([[5, 6]]), len(tok))[0]
    assert not allowed[layout["image"].start_id] and allowed[layout["speech"].start_id] and allowed[5]
    # a text-only reply: every modality at 0, against the adversary that pushes start markers
    rows = sample(model, layout, constrained=True, seed=0, max_frames={m: 0 for m in layout.modalities})
    assert count_segments(layout, rows) == 0
    assert count_segments(layout, sample(model, layout, constrained=True, seed=0)) > 0


def test_allowed_sets_inside_segments(compact):
    _, tok, layout = compact
    proc = SegmentConstraint(layout)
    mu = layout["music"]
    v = layout.vocab_size + 7  # a padded embedding matrix: extra ids never allowed
    a = proc.allowed(torch.tensor([[9, mu.start_id, mu.code_offset + 3, mu.code_offset + 16 + 1]]), v)[0]
    lo, hi = mu.layer_range(2)
    assert a.nonzero().flatten().tolist() == list(range(lo, hi))
    full_frame = [9, mu.start_id] + [lo0 for lo0, _ in (mu.layer_range(l) for l in range(4))]
    a = proc.allowed(torch.tensor([full_frame]), v)[0]
    assert a[mu.end_id] and a[mu.code_offset] and not a[mu.code_offset + 16]
    out = proc.allowed(torch.tensor([[9, 10]]), v)[0]
    assert not out[layout.vocab_size:].any()
    assert not out[mu.code_offset:mu.code_end].any() and not out[mu.end_id] and out[mu.start_id] and out[10]


def test_blocked_rows_add_minus_infinity_exactly_where_a_class_disallows(compact):
    """The engine masks a step by adding `blocked` rows: 0 where allowed (logits unchanged, bit
    for bit), -inf elsewhere, and the last row (free_class, unconstrained rows) all zeros."""
    from anygpt.lm.constraints import SegmentTables

    _, _, layout = compact
    t = SegmentTables(layout, layout.vocab_size + 7)
    assert t.blocked.shape == (t.allowed.shape[0] + 1, t.allowed.shape[1])
    assert torch.equal(t.blocked[:-1] == 0, t.allowed)
    assert torch.equal(t.blocked[:-1] == float("-inf"), ~t.allowed)
    assert t.free_class == t.allowed.shape[0] and not t.blocked[t.free_class].any()
    logits = torch.randn(3, t.vocab)
    cls = torch.tensor([0, t.base[0].item(), t.free_class])
    masked = logits + t.blocked.index_select(0, cls)
    filled = logits.clone()
    filled[:2].masked_fill_(~t.allowed[cls[:2]], float("-inf"))
    assert torch.equal(masked, filled)
