"""`anygpt eval TASK` end to end with the reference (oracle) system and the copy tokenizer."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from anygpt import cli


def main(argv: list[str]) -> int:
    """`anygpt eval ARGV` as the command runs it (exit status; messages on stdout/stderr)."""
    return cli.main(["eval", *argv])


def _run(tmp_path, *argv):
    out = tmp_path / f"{argv[0]}-{len(list(tmp_path.glob('*.json')))}.json"
    rc = main([*argv, "--out-file", str(out), "--no-progress"])
    assert rc == 0
    return json.loads(out.read_text())


def test_every_task_has_help_with_example(capsys):
    from anygpt.eval.cli import HELP

    for task in HELP:
        assert main([task, "--help"]) == 0
        out = capsys.readouterr().out
        assert "example" in out and f"anygpt eval {task}" in out
        system_help = re.search(r"^  --system SYSTEM(.*?)\n  --", out, re.S | re.M)
        if system_help:  # whisper is offered as a system for asr only
            assert ("whisper" in system_help.group(1)) == (task == "asr"), task


def test_missing_and_bad_inputs_name_the_file(tmp_path, capsys):
    assert main(["asr", "--manifest", str(tmp_path / "none.jsonl")]) == 1
    assert capsys.readouterr().err.startswith(f"anygpt eval asr: {tmp_path / 'none.jsonl'}: manifest not found")
    assert main(["caption", "--benchmark", "coco", "--root", str(tmp_path)]) == 1
    assert "dataset_coco.json" in capsys.readouterr().err
    assert main(["asr"]) == 2
    assert "--manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_speech_tasks(speech_corpus, tmp_path, capsys):
    r = _run(tmp_path, "asr", "--manifest", str(speech_corpus), "--system", "reference")
    assert r["summary"]["wer"] == 0.0 and r["n"] == 9 and len(r["groups"]["speaker"]) == 3
    assert "wer" in capsys.readouterr().out
    r = _run(tmp_path, "asr", "--manifest", str(speech_corpus), "--split", "test", "--limit", "3")  # whisper
    assert r["summary"]["wer"] < 0.25
    r = _run(tmp_path, "voice-clone", "--manifest", str(speech_corpus), "--limit", "3", "--workdir", str(tmp_path / "w"))
    s = r["summary"]
    assert s["wer"] < 0.25 and s["speaker_similarity"] > 0.75
    assert s["speaker_similarity"] == pytest.approx(s["speaker_similarity_ground_truth"])
    assert all(Path(i["prompt"]).exists() for i in r["items"])
    r = _run(tmp_path, "reconstruction", "--modality", "speech", "--manifest", str(speech_corpus), "--limit", "2")
    assert r["summary"]["si_snr"] > 40 and r["summary"]["log_mel_distance"] < 0.05
    assert r["summary"]["speaker_similarity"] > 0.99 and r["summary"]["wer"] < 0.25


@pytest.mark.slow
def test_image_tasks(scene_corpus, tmp_path):
    r = _run(tmp_path, "caption", "--manifest", str(scene_corpus), "--no-meteor")
    assert r["summary"]["attr_exact"] == 1.0 and r["summary"]["BLEU-4"] > 0.99
    r = _run(tmp_path, "text-to-image", "--manifest", str(scene_corpus), "--where", "kind=scene", "--limit", "6")
    assert r["summary"]["scene_exact"] == 1.0 and r["n"] == 6
    assert [i["id"] for i in r["items"]] == [f"scene-{k}" for k in range(0, 12, 2)]  # evenly spaced
    assert main(["caption", "--manifest", str(scene_corpus), "--where", "kind=digit", "--no-progress"]) == 1
    r = _run(tmp_path, "reconstruction", "--modality", "image", "--manifest", str(scene_corpus))
    assert r["summary"]["psnr"] == "inf"  # lossless; JSON has no infinity, so it is written as a string
    assert r["summary"]["ssim"] == pytest.approx(1.0) and r["summary"]["scene_exact"] == 1.0


@pytest.mark.slow
def test_music_tasks_and_plugged_system(melodies, tmp_path, monkeypatch):
    lines = []
    for name, (path, _, attrs) in melodies.items():
        cap = f"A melody in {attrs['key']} at {attrs['tempo_bpm']} BPM."
        lines.append(json.dumps({"id": name, "path": path.name, "caption": cap, "split": "test",
                                 "attributes": {**attrs, "register": "middle"}}))
    manifest = tmp_path / "corpus" / "music.jsonl"  # its paths are relative to its folder, as every manifest's
    manifest.parent.mkdir()
    for path, _, _ in melodies.values():
        (manifest.parent / path.name).write_bytes(path.read_bytes())
    manifest.write_text("\n".join(lines) + "\n")
    r = _run(tmp_path, "text-to-music", "--manifest", str(manifest))
    assert r["summary"]["key_accuracy"] == 1.0 and r["summary"]["tempo_accuracy"] == 1.0
    r = _run(tmp_path, "music-caption", "--manifest", str(manifest), "--no-meteor")
    assert r["summary"]["attr_key"] == 1.0 and r["summary"]["text_similarity"] > 0.99
    r = _run(tmp_path, "reconstruction", "--modality", "music", "--manifest", str(manifest), "--limit", "1")
    assert r["summary"]["note_f1"] > 0.95  # a 16-bit round trip can flip a borderline note
    # a system plugged in by module:factory, with options
    (tmp_path / "my_sut.py").write_text(textwrap.dedent("""
        class Parrot:
            def __init__(self, words):
                self.words = words
            def describe_music(self, path):
                return self.words
        def load(words="a melody"):
            return Parrot(words)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    r = _run(tmp_path, "music-caption", "--manifest", str(manifest), "--no-meteor",
             "--system", "my_sut:load", "--system-option", "words=a violin in C major")
    assert r["system"] == "my_sut:load" and r["summary"]["attr_key"] == 0.5
    assert main(["tts", "--manifest", str(manifest), "--system", "my_sut:load", "--no-progress",
                 "--out-file", str(tmp_path / "x.json")]) == 1  # Parrot cannot speak: a clear error
    assert not (tmp_path / "x.json").exists()
