"""Fresh scene pairs streamed for training (anygpt.data.fresh_pairs)."""

from __future__ import annotations

import pytest
import torch

from anygpt.data.fresh_pairs import PairOptions, PairStream, SceneSource, prompt_and_answer
from anygpt.data.packing import IGNORE
from anygpt.layout import BOT_ROLE
from anygpt.loaders import random_media_model
from anygpt.parts import CodesPart


@pytest.fixture(scope="module")
def model():
    return random_media_model(seed=0)


def _stream(model, **options):
    source = SceneSource(model.tokenizers["image"], seed=4, chunk=8)
    return PairStream(model.sequence_encoder, [(source, 1.0)], PairOptions(**options), seed=4)


def test_prompt_is_the_pairs_prefix_and_ends_at_the_bot_role(model):
    codes = torch.zeros(1, 32, dtype=torch.long)
    for direction in ("to_text", "from_text"):
        ids, n = prompt_and_answer(model.sequence_encoder, CodesPart("image", codes), "A red circle.", direction, "Draw it.")
        prompt_text = model.tokenizer.decode(ids[:n])
        assert prompt_text.rstrip().endswith(f"{BOT_ROLE}:") and n < len(ids)


def test_answer_only_labels_hide_exactly_the_prompt(model):
    every, answer = _stream(model), _stream(model, answer_only=True)
    for _ in range(6):
        ids_a, labels_a, direction = every.sample()
        ids_b, labels_b, _ = answer.sample()
        assert ids_a == ids_b and labels_a == ids_a  # the same seed, the same pair
        hidden = [i for i, t in enumerate(labels_b) if t == IGNORE]
        assert hidden == list(range(len(hidden))) and 0 < len(hidden) < len(ids_b)
        answer_text = model.tokenizer.decode(ids_b[len(hidden):])
        if direction == "to_text":
            assert "<soim>" not in answer_text  # the caption only
        else:
            assert answer_text.startswith("<soim>")


def test_scenes_are_fresh_and_the_curriculum_limits_objects(model):
    s = SceneSource(model.tokenizers["image"], seed=4, chunk=8)
    seen = [s.next_scene()[0] for _ in range(40)]
    assert len(set(seen)) == 40 and max(len(x.objects) for x in seen) > 1
    s.max_objects = 1  # takes effect at once, also for scenes already rendered
    assert all(len(s.next_scene()[0].objects) == 1 for _ in range(20))


def test_a_pool_repeats_its_scenes_and_the_curriculum_draws_within_it(model):
    s = SceneSource(model.tokenizers["image"], seed=4, chunk=8, pool=12)
    seen = [s.next_scene()[0] for _ in range(96)]
    assert set(seen) == set(s.pool) and len(set(s.pool)) == 12  # 96 draws, the same 12 scenes
    assert s.pool == SceneSource(model.tokenizers["image"], seed=4, pool=12).pool  # fixed by the seed
    s.max_objects = 1  # at once: the pool's one one-object scene
    single = [x for x in s.pool if len(x.objects) == 1]
    assert len(single) == 1 and {s.next_scene()[0] for _ in range(24)} == set(single)
    lone = SceneSource(model.tokenizers["image"], seed=4, chunk=8, pool=1, max_objects=1)  # its one scene has 4
    with pytest.raises(ValueError, match="pool of 1 has at most 1 objects"):
        lone.next_scene()


def test_cfg_drop_empties_captions_of_text_to_image_pairs_only(model):
    s = _stream(model, cfg_drop=1.0)
    for _ in range(10):
        ids, _, direction = s.sample()
        text = model.tokenizer.decode(ids)
        if direction == "from_text":
            assert "This is input: <eoh>" in text.replace("  ", " ")
        else:
            answer = text.split("[MMGPT]:")[1]
            assert any(w in answer for w in ("circle", "square", "triangle", "star"))  # a caption is there


def test_blocks_pack_the_stream_end_to_end(model):
    s = _stream(model, answer_only=True)
    a_ids, a_lab = s.block(100)
    b_ids, b_lab = s.block(100)
    assert a_ids.shape == (100,) and b_ids.shape == (100,)
    ref = _stream(model, answer_only=True)
    ids, labels = [], []
    while len(ids) < 200:
        i, l, _ = ref.sample()
        ids, labels = ids + i, labels + l
    assert a_ids.tolist() + b_ids.tolist() == ids[:200] and a_lab.tolist() + b_lab.tolist() == labels[:200]


def test_excluded_scenes_are_never_drawn(model):
    """One-object scenes are few (about a thousand), so a stream soon repeats the evaluation's
    unless they are excluded."""
    from anygpt.eval.scene_abilities import scene_items

    held = frozenset(i.spec for i in scene_items(400, seed=1, max_objects=1))
    s = SceneSource(model.tokenizers["image"], seed=4, chunk=64, max_objects=1, exclude=held)
    drawn = {s.next_scene()[0] for _ in range(640)}
    assert not drawn & held and len(drawn) > 100
    free = SceneSource(model.tokenizers["image"], seed=4, chunk=64, max_objects=1)
    assert {free.next_scene()[0] for _ in range(640)} & held  # without the exclusion they come up
