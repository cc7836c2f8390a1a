"""anygpt.data.corpora.music: the plan of the music corpus (pieces held out whole, deterministic
for a seed) and captions whose every fact is the clip's."""

from __future__ import annotations

import random

from anygpt.data.corpora.music import COLLECTIONS, _tempo_word, caption, plan
from anygpt.data.corpora.presets import MusicPreset

FACTS = {"composer": None, "bpm": 84, "key": "D minor", "metre": "3/4", "register": "low"}


def test_plan_holds_pieces_out_whole_and_repeats_for_a_seed():
    preset = MusicPreset(n_pieces=20, clips_per_piece=2, heldout_piece_fraction=0.1)
    jobs = plan(preset, seed=0)
    assert len(jobs) == 40 and jobs == plan(preset, seed=0)
    by_piece: dict[str, set[str]] = {}
    for j in jobs:
        by_piece.setdefault(j["piece_id"], set()).add(j["split"])
        assert j["collection"] in COLLECTIONS and j["program"] in preset.instruments and 60 <= j["tempo"] <= 150
    held = [p for p, splits in by_piece.items() if "heldout_pieces" in splits]
    assert len(held) == 2 and all(by_piece[p] == {"heldout_pieces"} for p in held)
    assert {j["piece_id"] for j in plan(preset, seed=1)} != set(by_piece)


def test_captions_state_only_the_clips_facts():
    rng = random.Random(0)
    for _ in range(40):
        text = caption(FACTS, "flute", "essenFolksong", rng)
        assert "flute" in text and "84" in text and "D minor" in text and "low" in text
    assert "Bach" in caption(FACTS, "organ", "bach", random.Random(1))  # the collection, not a composer field
    by = caption({**FACTS, "composer": "Haydn"}, "piano", "miscFolk", random.Random(2))
    assert "Haydn" in by


def test_tempo_words():
    assert [_tempo_word(b) for b in (50, 70, 100, 120, 150)] == ["slow", "calm", "moderate", "lively", "fast"]
