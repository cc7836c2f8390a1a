"""anygpt.data.corpora.images: the plan of a corpus's images (deterministic for a seed, held-out
scenes apart) and rendering a scene job into a picture, its original and its record."""

from __future__ import annotations

import random
from dataclasses import replace

from PIL import Image

from anygpt.data.corpora.images import digit_caption, plan, render_batch
from anygpt.data.corpora.presets import get_corpus_preset
from anygpt.data.scenes import HELDOUT_PAIRS

PRESET = replace(get_corpus_preset("micro").images, n_emoji_google=0, n_emoji_noto=0, n_digits=0,
                 n_scenes=30, n_heldout_scenes=6)


def test_plan_is_deterministic_and_holds_out_its_scenes():
    jobs = plan(PRESET, seed=0)
    assert len(jobs) == 36 and jobs == plan(PRESET, seed=0)
    held = [j for j in jobs if j["heldout"]]
    assert len(held) == 6 and {j["split"] for j in held} == {"heldout_combos"}
    assert {j["split"] for j in jobs if not j["heldout"]} <= {"train", "val", "test"}
    assert [j["seed"] for j in plan(PRESET, seed=1)] != [j["seed"] for j in jobs]
    assert [j["split"] for j in plan(PRESET, seed=0)] == [j["split"] for j in jobs]


def test_a_scene_job_renders_its_picture_original_and_record(tmp_path):
    jobs = plan(PRESET, seed=0)
    entries = render_batch([jobs[0], jobs[-1], {**jobs[0], "kind": "hologram"}], tmp_path, PRESET)
    assert [e["status"] for e in entries] == ["ok", "ok", "skipped"]  # one done-log entry per job
    assert "hologram scene-t000000: unknown image kind hologram" in entries[2]["reason"]
    records = [e["record"] for e in entries[:2]]
    for job, rec in zip((jobs[0], jobs[-1]), records):
        assert rec["id"] == f"image-{job['id']}" and rec["split"] == job["split"] and rec["kind"] == "scene"
        assert Image.open(tmp_path / rec["path"]).size == (64, 64)
        assert Image.open(tmp_path / rec["original_path"]).size == (256, 256)
        assert rec["caption"] and rec["attributes"]["source"] == "scenes"
    pairs = {tuple(p.split("/")) for p in records[1]["attributes"]["pairs"]}
    assert pairs & set(HELDOUT_PAIRS)  # the held-out scene shows a held-out (shape, colour) pair


def test_digit_captions_name_the_digit():
    rng = random.Random(0)
    for d in range(10):
        text = digit_caption(d, rng)
        assert str(d) in text or ("zero one two three four five six seven eight nine".split()[d]) in text
