"""The micro build: manifests, files, honest splits, resume, determinism, stats, bad input."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from anygpt import cli
from anygpt.data import corpus_stats, format_stats, get_corpus_preset
from anygpt.data.corpora import common, speech
from anygpt.data.corpora.build import build_corpora
from anygpt.data.corpora.common import MissingDependencyError, read_jsonl, sha256_file
from anygpt.data.corpora.presets import Voice
from anygpt.data.scenes import HELDOUT_PAIRS
from anygpt.errors import AnyGPTError

CORPORA = ("text", "speech", "music", "images")


def manifest(root: Path, corpus: str) -> list[dict]:
    return read_jsonl(root / corpus / "manifest.jsonl")


def test_manifests_are_complete_and_files_match(micro_dir):
    index = json.loads((micro_dir / "index.json").read_text())
    assert index["preset"] == "micro" and index["seed"] == 0
    for corpus in CORPORA:
        recs = manifest(micro_dir, corpus)
        assert recs, corpus
        assert index["corpora"][corpus]["count"] == len(recs)
        ids = [r["id"] for r in recs]
        assert len(ids) == len(set(ids))
        for r in recs:
            assert {"id", "path", "split", "sha256"} <= r.keys()
            assert r.get("text") or r.get("caption")
            if corpus != "text":
                assert isinstance(r["attributes"], dict)
                assert sha256_file(micro_dir / corpus / r["path"]) == r["sha256"]
    for r in manifest(micro_dir, "speech"):
        info = sf.info(str(micro_dir / "speech" / r["path"]))
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.duration - r["duration"]) < 1e-3 and r["duration"] > 0.5
        assert isinstance(r["augmented"], bool) and r["speaker"]
    for r in manifest(micro_dir, "music"):
        assert sf.info(str(micro_dir / "music" / r["path"])).samplerate == 32000
        assert sf.info(str(micro_dir / "music" / r["path_16k"])).samplerate == 16000
        assert {"instrument", "tempo_bpm", "key", "metre", "register"} <= r["attributes"].keys()
        assert r["attributes"]["instrument"] in r["caption"]
    kinds = set()
    for r in manifest(micro_dir, "images"):
        with Image.open(micro_dir / "images" / r["path"]) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
        assert (micro_dir / "images" / r["original_path"]).is_file()
        kinds.add(r["kind"])
    assert kinds == {"emoji_google", "emoji_noto", "digit", "scene"}
    text = manifest(micro_dir, "text")
    lines = {s: (micro_dir / "text" / f"{s}.txt").read_text().splitlines() for s in ("train", "val", "test")}
    for r in text:
        assert lines[r["split"]][r["line"]] == r["text"]
    keys = [r["text"].lower() for r in text]
    assert len(keys) == len(set(keys))


def test_speech_splits_are_disjoint_by_speaker_and_sentence(micro_dir):
    recs = manifest(micro_dir, "speech")
    speakers = {s: {r["speaker"] for r in recs if r["split"] == s} for s in {r["split"] for r in recs}}
    sentences = {s: {r["text"] for r in recs if r["split"] == s} for s in speakers}
    assert set(speakers) == {"train", "val", "test", "heldout_sentences", "heldout_speakers"}
    seen = speakers["train"] | speakers["val"] | speakers["test"] | speakers["heldout_sentences"]
    assert speakers["heldout_speakers"] and not speakers["heldout_speakers"] & seen
    for split in ("val", "test", "heldout_sentences", "heldout_speakers"):
        assert not sentences[split] & sentences["train"], split
    assert not sentences["heldout_sentences"] & (sentences["val"] | sentences["test"])
    assert any(r["augmented"] for r in recs if r["split"] == "train")
    assert any(r["augmented"] for r in recs if r["split"] == "heldout_speakers")


def test_music_heldout_pieces_never_in_other_splits(micro_dir):
    recs = manifest(micro_dir, "music")
    held = {r["piece_id"] for r in recs if r["split"] == "heldout_pieces"}
    rest = {r["piece_id"] for r in recs if r["split"] != "heldout_pieces"}
    assert held and rest and not held & rest


def test_image_heldout_combinations_and_emoji_splits(micro_dir):
    recs = manifest(micro_dir, "images")
    for r in recs:
        if r["kind"] != "scene":
            continue
        pairs = {tuple(p.split("/")) for p in r["attributes"]["pairs"]}
        assert bool(pairs & HELDOUT_PAIRS) == (r["split"] == "heldout_combos"), r
    by_char: dict[str, set] = {}
    for r in recs:
        if r["kind"].startswith("emoji"):
            by_char.setdefault(r["attributes"]["unified"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_char.values())


def test_stats_command_prints_counts_per_split(micro_dir, capsys):
    assert cli.main(["data", "stats", "--corpus", str(micro_dir)]) == 0
    out = capsys.readouterr().out
    for word in ("speech", "music", "image", "text", "heldout_speakers", "heldout_pieces", "heldout_combos",
                 "hours", "skipped"):
        assert word in out
    stats = corpus_stats(micro_dir)
    n_speech = len(manifest(micro_dir, "speech"))
    assert stats["corpora"]["speech"]["all"]["items"] == n_speech
    assert stats["corpora"]["speech"]["all"]["hours"] > 0
    assert cli.main(["data", "stats", "--corpus", str(micro_dir / "nothing")]) == 1
    assert capsys.readouterr().err.startswith(f"anygpt data stats: {micro_dir / 'nothing'}: holds no corpus")
    assert cli.main(["data", "stats", str(micro_dir)]) == 2  # the old spelling, a bare folder, is gone
    assert "the following arguments are required: --corpus" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    for sub in ("build", "stats"):
        assert cli.main(["data", sub, "--help"]) == 0
        assert "example" in capsys.readouterr().out


def test_resume_after_kill_gives_the_same_manifest(micro_dir, tmp_path):
    work = tmp_path / "resume"
    shutil.copytree(micro_dir, work)
    before = {c: manifest(work, c) for c in ("speech", "images")}
    for corpus in ("speech", "images"):
        log_path = work / corpus / ".done.jsonl"
        lines = log_path.read_text().splitlines(keepends=True)
        # a kill: the last entries never logged, the one before cut mid-line,
        # a half-written temporary file, and a logged file that was deleted
        log_path.write_text("".join(lines[:-4]) + lines[-4][: len(lines[-4]) // 2])
        (work / corpus / "wavs" if corpus == "speech" else work / corpus / "images").mkdir(exist_ok=True)
        (work / corpus / ".a.wav.anygpt-tmp-k2j4h6x0.wav").write_bytes(b"RIFF")  # as atomic_path names them
        (work / corpus / ".gitignore").write_text("*.wav\n")  # the user's own dot-files stay
        (work / corpus / "files").mkdir(exist_ok=True)
        (work / corpus / "files" / ".notes").write_text("mine")
        first = before[corpus][0]
        (work / corpus / first["path"]).unlink()
        (work / corpus / "manifest.jsonl").unlink()
    build_corpora("micro", work, seed=0, corpora=("speech", "images"), progress=False)
    for corpus in ("speech", "images"):
        assert manifest(work, corpus) == before[corpus]
        assert not (work / corpus / ".a.wav.anygpt-tmp-k2j4h6x0.wav").exists()
        assert (work / corpus / ".gitignore").read_text() == "*.wav\n"
        assert (work / corpus / "files" / ".notes").read_text() == "mine"


def test_same_seed_same_bytes(micro_dir, tmp_path):
    again = tmp_path / "again"
    build_corpora("micro", again, seed=0, progress=False, workers=1)
    for corpus in CORPORA:
        assert manifest(again, corpus) == manifest(micro_dir, corpus), corpus


def test_other_seed_other_items(micro_dir, tmp_path):
    other = tmp_path / "seed1"
    build_corpora("micro", other, seed=1, corpora=("text", "images"), progress=False)
    a = {r["sha256"] for r in manifest(micro_dir, "images")}
    b = {r["sha256"] for r in manifest(other, "images")}
    assert a != b
    with pytest.raises(AnyGPTError, match="seed"):
        build_corpora("micro", other, seed=2, corpora=("text",), progress=False)


def test_corrupt_asset_and_failing_voice_are_skipped_and_counted(tmp_path):
    src = common.Path.home() / ".cache/anygpt/npm/node_modules/emoji-datasource-google"
    emoji = tmp_path / "emoji"
    (emoji / "img/google/64").mkdir(parents=True)
    entries = [e for e in json.loads((src / "emoji.json").read_text()) if e.get("has_img_google")][:6]
    (emoji / "emoji.json").write_text(json.dumps(entries))
    for i, e in enumerate(entries):
        target = emoji / "img/google/64" / e["image"]
        if i == 0:
            target.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
        elif i != 1:  # entry 1: picture missing
            shutil.copy(src / "img/google/64" / e["image"], target)
    base = get_corpus_preset("micro")
    preset = replace(base,
                     images=replace(base.images, n_emoji_google=6, n_emoji_noto=0, n_digits=0, n_scenes=2,
                                    n_heldout_scenes=0),
                     speech=replace(base.speech, train_voices=(Voice("flite", "kal"), Voice("espeak", "xx-no-such-voice"),
                                                               Voice("festival", "no_such_voice")), heldout_voices=()))
    index = build_corpora(preset, tmp_path / "bad", corpora=("text", "speech", "images"), progress=False,
                          emoji_dir=emoji)
    img = index["corpora"]["images"]
    assert img["count"] == 6 and img["skipped"] == 2
    assert any("corrupt" in e for e in img["skipped_examples"]) and any("missing" in e for e in img["skipped_examples"])
    sp = index["corpora"]["speech"]
    reasons = " ".join(sp["skipped_by_reason"])
    assert "espeak-xx-no-such-voice" in reasons and "festival-no_such_voice" in reasons
    assert sp["count"] > 0 and sp["skipped"] == sp["planned"] - sp["count"] > 0
    assert {r["speaker"] for r in manifest(tmp_path / "bad", "speech")} == {"flite-kal"}
    out = format_stats(corpus_stats(tmp_path / "bad"))
    assert "corrupt" in out and "no-such-voice" in out


def test_missing_tool_names_the_package_and_setup(monkeypatch, tmp_path, capsys):
    real_which = shutil.which
    monkeypatch.setattr(common.shutil, "which", lambda b: None if b == "flite" else real_which(b))
    with pytest.raises(MissingDependencyError, match=r"apt-get install flite") as e:
        build_corpora("micro", tmp_path / "x", progress=False)
    assert "scripts/setup.sh" in str(e.value)
    assert cli.main(["data", "build", "--preset", "micro", "--out", str(tmp_path / "y")]) == 1
    assert capsys.readouterr().err.startswith("anygpt data build: `flite` not found")


def test_a_busy_machine_changes_no_item(tmp_path, monkeypatch):
    """A TTS call that times out (a loaded machine) must not become a skipped item: it is tried
    again with more time, and if it still times out it is left for the next run, so the corpus
    is the same as on an idle machine (it used to depend on the load: the flaky determinism
    test). Here espeak-ng is slowed down past the timeout, then the build is run again."""
    base = get_corpus_preset("micro")
    preset = replace(base, speech=replace(base.speech, train_voices=(Voice("espeak", "en-us+f3"),), heldout_voices=(),
                                          train_per_speaker=2, val_per_speaker=0, test_per_speaker=0,
                                          heldout_sentences_per_speaker=0))
    idle = build_corpora(preset, tmp_path / "idle", corpora=("text", "speech"), progress=False, workers=1)
    slow_bin = tmp_path / "bin"
    slow_bin.mkdir()
    real = shutil.which("espeak-ng")
    (slow_bin / "espeak-ng").write_text(f"#!/bin/sh\nsleep 3\nexec {real} \"$@\"\n")
    (slow_bin / "espeak-ng").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow_bin}:{os.environ['PATH']}")
    monkeypatch.setattr(common, "TOOL_ATTEMPTS", 2)
    monkeypatch.setattr(speech, "TIMEOUT_S", 0.3)
    with pytest.raises(common.ToolTimeout, match="run the same command again"):
        build_corpora(preset, tmp_path / "busy", corpora=("text", "speech"), progress=False, workers=1)
    assert not (tmp_path / "busy" / "speech" / ".done.jsonl").exists() or \
        "skipped" not in (tmp_path / "busy" / "speech" / ".done.jsonl").read_text()
    monkeypatch.undo()
    again = build_corpora(preset, tmp_path / "busy", corpora=("text", "speech"), progress=False, workers=1)
    assert again["corpora"]["speech"]["count"] == idle["corpora"]["speech"]["count"] == 2
    assert manifest(tmp_path / "busy", "speech") == manifest(tmp_path / "idle", "speech")


def test_espeak_clips_do_not_depend_on_the_machine_being_fresh(tmp_path, monkeypatch):
    """The race behind a failed test_same_seed_same_bytes: on a fresh machine the first espeak-ng
    runs set up PulseAudio's runtime folder, which reseeded the rand() its breath noise comes from."""
    clips = []
    for i in range(2):
        home = tmp_path / f"home{i}"  # a machine where nothing has run yet
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        for var in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH"):
            monkeypatch.delenv(var, raising=False)
        clips.append(speech.synthesise("espeak", "en-us+f3", "She sells sea shells.", tmp_path / f"{i}.wav").read_bytes())
    assert clips[0] == clips[1]
