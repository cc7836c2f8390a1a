"""Shared inputs for the scorer tests: real speech (flite), rendered melodies, drawn scenes.

Everything is made once per session in a temporary folder; heavy models load once per
process (their loaders are cached), so the suite stays within a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from anygpt.eval.probes import flite_say, melody_clip

SENTENCES = [
    "The little boat drifted slowly across the quiet lake.",
    "Please bring the green folder to the meeting tomorrow morning.",
    "She opened the window and listened to the birds outside.",
]
VOICES = ("slt", "rms", "awb")


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory) -> Path:
    """A corpus manifest of flite speech: 3 voices x 3 sentences, split 'test'."""
    root = tmp_path_factory.mktemp("speech")
    records = []
    for v in VOICES:
        for i, text in enumerate(SENTENCES):
            rel = Path("wavs") / f"{v}-{i}.wav"
            flite_say(text, v, root / rel)
            records.append({"id": f"{v}-{i}", "path": str(rel), "text": text, "speaker": f"flite-{v}",
                            "split": "test", "duration": None, "attributes": {}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root / "manifest.jsonl"


@pytest.fixture(scope="session")
def melodies(tmp_path_factory) -> dict:
    """Two rendered melodies of known key and tempo: C major 120 BPM (piano), A minor 90 BPM (flute)."""
    root = tmp_path_factory.mktemp("music")
    a, notes_a = melody_clip(root / "a.wav", "C", "major", 120, seed=1, program=0)
    b, notes_b = melody_clip(root / "b.wav", "A", "minor", 90, seed=2, program=73)
    return {"a": (a, notes_a, {"tempo_bpm": 120, "key": "C major", "mode": "major"}),
            "b": (b, notes_b, {"tempo_bpm": 90, "key": "A minor", "mode": "minor"})}


@pytest.fixture(scope="session")
def scene_corpus(tmp_path_factory) -> Path:
    """A manifest of 12 drawn scenes (64 px) with captions and attributes, split 'test'."""
    from anygpt.data import scenes

    root = tmp_path_factory.mktemp("scenes")
    rng = random.Random(7)
    records = []
    for i in range(12):
        spec = scenes.sample_scene(rng)
        rel = Path("images") / f"scene-{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        scenes.render_scene(spec, size=64).save(root / rel)
        records.append({"id": f"scene-{i}", "kind": "scene", "path": str(rel), "caption": scenes.caption(spec, rng),
                        "split": "test", "attributes": scenes.attributes(spec)})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root / "manifest.jsonl"
