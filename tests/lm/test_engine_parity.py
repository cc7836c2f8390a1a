"""Greedy decoding through the engine gives HF generate's tokens, for the same model and
prompts: batch 1 and batch 8 with mixed prompt lengths (left padding), constrained and not."""

from __future__ import annotations

import pytest
import torch

from anygpt.lm.engine import Engine, Request
from anygpt.lm.generation import GenerationSettings, generate_ids


def prompts(tok, layout, n, seed):
    """n prompts of 3..40 plain text ids, some ending inside an open speech/music segment."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(3, 40, (1,), generator=g))
        ids = torch.randint(3, len(tok) - layout.vocab_size + 400, (length,), generator=g)
        ids = ids.clamp(max=min(r.code_offset for r in layout.ranges.values()) - 1)
        if i % 3 == 2:
            ids = torch.cat([ids, torch.tensor([layout["music"].start_id])])
        out.append(ids)
    return out


def hf_rows(model, layout, batch, settings, pad_id=0):
    """HF generate on a left-padded batch -> per-row new ids, cut after the first stop id."""
    width = max(p.numel() for p in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(batch):
        ids[i, width - p.numel():] = p
        mask[i, width - p.numel():] = 1
    new = generate_ids(model, ids, mask, layout, settings, stop_ids=[2], pad_id=pad_id)
    rows = []
    for r in new.tolist():
        rows.append(r[: r.index(2) + 1] if 2 in r else r)
    return rows


@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_matches_hf_generate(compact_lm, batch, constrained):
    model, tok, layout = compact_lm
    settings = GenerationSettings(max_new_tokens=40, do_sample=False, constrained=constrained)
    engine = Engine(model, layout, max_batch=8)
    for seed in range(3):
        batch_prompts = prompts(tok, layout, batch, seed)
        want = hf_rows(model, layout, batch_prompts, settings)
        got = engine.generate([Request(p, settings, stop_ids=[2]) for p in batch_prompts])
        assert [r.ids for r in got] == want
        assert all(r.finish_reason == ("stop" if r.ids[-1] == 2 else "length") for r in got)


def test_gqa_model_matches_hf_generate(gqa_lm):
    model, tok, layout = gqa_lm
    settings = GenerationSettings(max_new_tokens=30, do_sample=False)
    batch_prompts = prompts(tok, layout, 4, seed=9)
    got = Engine(model, layout).generate([Request(p, settings, stop_ids=[2]) for p in batch_prompts])
    assert [r.ids for r in got] == hf_rows(model, layout, batch_prompts, settings)


def test_shared_weights_path_matches_hf_generate(compact_lm):
    """Without weight copies (the path for big or half-precision models) the engine runs
    F.linear on the model's own parameters: same tokens as HF generate."""
    model, tok, layout = compact_lm
    settings = GenerationSettings(max_new_tokens=30, do_sample=False)
    batch_prompts = prompts(tok, layout, 5, seed=11)
    engine = Engine(model, layout, copy_weights=False)
    assert engine.model.layers[0]["o"].weights[0] is model.model.layers[0].self_attn.o_proj.weight
    got = engine.generate([Request(p, settings, stop_ids=[2]) for p in batch_prompts])
    assert [r.ids for r in got] == hf_rows(model, layout, batch_prompts, settings)
