"""anygpt.nn.speech_data: the speech corpus as clips, their audio, and the Whisper content
targets on the tokenizer's code frames (computed once, then read from the cache)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from anygpt.errors import ManifestError, UnsafePathError
from anygpt.nn import speech_data
from anygpt.nn.speech_data import load_clips, pool_frames, read_speech_clips, speaker_index, whisper_targets


def _corpus(root, records):
    speech = root / "speech"
    (speech / "wav").mkdir(parents=True)
    for r in records:
        if not r["path"].startswith(".."):
            t = np.arange(int(r["duration"] * 8000)) / 8000
            sf.write(speech / r["path"], (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 8000)
    (speech / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


RECORDS = [
    {"id": "a1", "path": "wav/a1.wav", "speaker": "b", "split": "train", "text": "one", "duration": 0.5},
    {"id": "a2", "path": "wav/a2.wav", "speaker": "a", "split": "test", "text": "two", "duration": 0.25},
]


def test_manifest_from_the_corpus_root_or_the_speech_folder(tmp_path):
    root = _corpus(tmp_path, RECORDS)
    clips = read_speech_clips(root)
    assert [(c.id, c.speaker, c.split, c.text, c.duration) for c in clips] == [
        ("a1", "b", "train", "one", 0.5), ("a2", "a", "test", "two", 0.25)]
    assert clips[0].path == root / "speech" / "wav" / "a1.wav"
    assert [c.id for c in read_speech_clips(root / "speech", splits=["test"])] == ["a2"]
    assert speaker_index(clips) == {"a": 0, "b": 1}


def test_manifest_refusals(tmp_path):
    with pytest.raises(ManifestError, match="no speech manifest; build the corpus first"):
        read_speech_clips(tmp_path)
    root = _corpus(tmp_path / "bad", [{**RECORDS[0], "path": "../../outside.wav"}])
    with pytest.raises(UnsafePathError, match="item 'a1' path"):
        read_speech_clips(root)


def test_clips_load_as_mono_float32_at_the_asked_rate(tmp_path):
    clips = read_speech_clips(_corpus(tmp_path, RECORDS))
    wavs = load_clips(clips, 16000, progress=False)
    assert [w.shape for w in wavs] == [(8000,), (4000,)] and wavs[0].dtype == np.float32


def test_pool_frames_averages_groups_and_pads_with_the_last_frame():
    feats = np.arange(10, dtype=np.float32).reshape(5, 2)  # rows [0,1] [2,3] [4,5] [6,7] [8,9]
    assert np.array_equal(pool_frames(feats, 2, 2), [[1, 2], [5, 6]])
    assert np.array_equal(pool_frames(feats, 2, 3), [[1, 2], [5, 6], [8, 9]])  # the last group padded


def test_whisper_targets_on_code_frames_then_from_the_cache(tmp_path, monkeypatch):
    clips = read_speech_clips(_corpus(tmp_path, RECORDS))
    wavs = load_clips(clips, 16000, progress=False)
    with pytest.raises(ValueError, match="must be a multiple of 320"):
        whisper_targets(clips, wavs, 500, tmp_path / "t.npz", progress=False)
    targets = whisper_targets(clips, wavs, 640, tmp_path / "t.npz", threads=1, progress=False)
    assert {k: v.shape for k, v in targets.items()} == {"a1": (13, 384), "a2": (7, 384)}
    assert targets["a1"].dtype == np.float16 and np.isfinite(targets["a1"]).all() and targets["a1"].std() > 0

    def no_model(*_, **__):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(speech_data, "WhisperEncoder", no_model)
    again = whisper_targets(clips, wavs, 640, tmp_path / "t.npz", progress=False)
    assert all(np.array_equal(again[k], targets[k]) for k in targets)
