"""The four tokenizer trainers on the training core, on corpora made here: a short run learns,
checkpoints are safetensors, the export loads with the tokenizer's loader and `--export-only`
re-exports it, a resumed run after kill -9 equals an uninterrupted one, a run folder of another
configuration is refused and left as it was, a planted pickle is never loaded, one flag vocabulary."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anygpt.errors import AnyGPTError, CheckpointError
from anygpt.files import MARKER
from anygpt.modalities import load_tokenizer
from anygpt.train import image_tokenizer, music_codec, soundstorm, speech_tokenizer
from anygpt.train.recipes import CorpusError
from killed_runs import kill_then_rerun
from tokenizer_corpora import (IMAGE_ARGS, MUSIC_ARGS, SPEECH_ARGS, SPEECH_CODEC, STORM_ARGS, write_image_corpus,
                               write_music_corpus, write_speech_corpus)

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
RUN = ["--threads", "1", "--no-progress", "--log-every", "1"]
MODULES = {"music-codec": music_codec, "speech-tokenizer": speech_tokenizer, "soundstorm": soundstorm,
           "image-tokenizer": image_tokenizer}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_music_corpus(root)
    write_speech_corpus(root)
    write_image_corpus(root)
    return root


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    """An untrained small speech codec: SoundStorm learns its codes."""
    from anygpt.nn.speech_codec import CompactSpeechCodec, SpeechCodecConfig, save_codec

    torch.manual_seed(0)
    return save_codec(CompactSpeechCodec(SpeechCodecConfig(**SPEECH_CODEC)), tmp_path_factory.mktemp("codec") / "c")


def args_for(name: str, corpus: Path, codec_dir: Path) -> list[str]:
    """Each trainer's small model on the test corpus (speech: generated clips, --synthetic)."""
    return {"music-codec": ["--corpus", str(corpus), *MUSIC_ARGS, "--lr", "3e-3", "--warmup", "2"],
            "speech-tokenizer": ["--synthetic", *SPEECH_ARGS, "--lr", "3e-3", "--warmup", "5"],
            "soundstorm": ["--corpus", str(corpus), "--codec", str(codec_dir), *STORM_ARGS, "--lr", "3e-3",
                           "--warmup", "5"],
            "image-tokenizer": ["--corpus", str(corpus), *IMAGE_ARGS, "--lr", "5e-3", "--warmup", "5",
                                "--no-bf16"]}[name] + RUN


def log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------- a short run of each

def check_export_loads(name: str, folder: Path, codec_dir: Path) -> None:
    """The exported folder loads with the tokenizer's own loader and encodes / fills."""
    if name == "music-codec":
        tok = load_tokenizer("music", "compact", path=folder)
        t = torch.arange(3200) / 16000
        assert tok.codebook_size == 64 and tok.encode(torch.sin(2 * np.pi * 440 * t)[None, None]).shape == (1, 4, 10)
    elif name == "speech-tokenizer":
        tok = load_tokenizer("speech", "compact", path=folder)
        assert tok.num_codebooks == 3 and tok.encode(torch.zeros(1, 1, 16000)).shape == (1, 3, 25)
    elif name == "soundstorm":
        tok = load_tokenizer("speech", "compact", path=codec_dir, acoustic_path=folder)
        assert tok.default_prompt.shape == (3, 50)  # all layers of the first clip, up to 3 s (it has 2)
        assert tok.decode(torch.randint(0, 48, (1, 1, 10))).shape == (1, 1, 10 * tok.hop)
    else:
        tok = load_tokenizer("image", "compact", path=folder)
        assert tok.encode(torch.rand(2, 3, 16, 16)).shape == (2, 1, 8)
        assert json.loads((folder / "training.json").read_text())["val"]["codes_used"] >= 1


# the loss a trainer lowers, the steps it gets, and how much lower it must end
LEARNS = {"music-codec": ("mel", 40, 0.8), "speech-tokenizer": ("mel", 50, 0.7),
          "soundstorm": ("loss", 60, 0.95), "image-tokenizer": ("l1", 60, 0.85)}


@pytest.mark.parametrize("name", MODULES)
def test_short_run_learns_checkpoints_and_exports(tmp_path, corpus, codec_dir, name):
    key, steps, ratio = LEARNS[name]
    run = tmp_path / "run"
    base = [*args_for(name, corpus, codec_dir), "--out", str(run), "--steps", str(steps)]
    assert MODULES[name].main([*base, "--save-every", str(steps // 2), "--export", str(tmp_path / "exp")]) == 0
    rows = log_rows(run)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    first, last = np.mean([r[key] for r in rows[:5]]), np.mean([r[key] for r in rows[-5:]])
    assert last < ratio * first, (name, key, first, last)
    # checkpoints: safetensors + JSON only, the newest kept
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == [f"step-{steps // 2:08d}", f"step-{steps:08d}"]
    files = {p.name for p in (run / "checkpoints" / ckpts[-1]).iterdir()}
    assert "state.json" in files and all(f.endswith(".safetensors") for f in files - {"state.json", MARKER}), files
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.pth"))
    check_export_loads(name, tmp_path / "exp", codec_dir)
    # --export-only: the newest checkpoint again, the same weights, no training
    assert MODULES[name].main([*base, "--export-only", "--export", str(tmp_path / "again")]) == 0
    for f in ("model.safetensors", "prompt.safetensors"):
        if (tmp_path / "exp" / f).is_file():
            assert (tmp_path / "again" / f).read_bytes() == (tmp_path / "exp" / f).read_bytes(), f
    assert len(log_rows(run)) == steps


def test_soundstorm_export_beats_its_initialisation(tmp_path, corpus, codec_dir):
    """On a fixed batch the trained model's masked-token loss is below the untrained one's."""
    from anygpt.nn.soundstorm import SoundStorm, SoundStormConfig, load_soundstorm
    from anygpt.nn.weights import read_meta

    out = tmp_path / "storm"
    assert soundstorm.main([*args_for("soundstorm", corpus, codec_dir), "--out", str(out), "--steps", "80",
                            "--export", str(tmp_path / "exp")]) == 0
    with np.load(out / "codes.npz") as z:
        codes = [z[f"c{i}"].astype(np.int64) for i in range(12)]
    batch = soundstorm.draw_batch(codes, [i % 2 for i in range(12)], 8, 20, 0.5, seed=123, step=0)
    assert batch["acoustic"].shape[2] == 2 and batch["mask"].any(1).all()

    def loss(model):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return float(np.mean([model.loss(batch["semantic"], batch["acoustic"], batch["prompt_len"],
                                             batch["mask"], generator=g)[0].item() for _ in range(8)]))

    before = SoundStorm(SoundStormConfig.from_dict(read_meta(tmp_path / "exp")["soundstorm"])).eval()
    assert loss(load_soundstorm(tmp_path / "exp")) < 0.85 * loss(before)


# ----------------------------------------------------------------- resume

def test_resume_after_kill_equals_uninterrupted(tmp_path, corpus, codec_dir):
    """kill -9 after the first checkpoints, rerun: the same losses step by step and the same
    final weights as a run never interrupted (batches, RNG streams and optimizer restored)."""
    args = [*args_for("music-codec", corpus, codec_dir), "--steps", "24", "--save-every", "2", "--keep", "2"]
    ref = tmp_path / "ref"
    music_codec.main([*args, "--out", str(ref)])

    run = tmp_path / "killed"
    kill_then_rerun([sys.executable, "-m", "anygpt.cli", "train", "music-codec", *args, "--out", str(run)], ENV, run,
                    4, 24)
    losses = {}
    for r in log_rows(run):  # steps logged before the kill and again after it must agree
        assert losses.setdefault(r["step"], r["total"]) == r["total"], r["step"]
    assert losses == {r["step"]: r["total"] for r in log_rows(ref)}
    a, b = (sorted((x / "checkpoints").iterdir())[-1] for x in (ref, run))
    for f in ("model.safetensors", "generators.safetensors"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


@pytest.mark.parametrize("name", MODULES)
def test_run_folder_from_another_config_is_refused_and_untouched(tmp_path, corpus, codec_dir, name):
    run = tmp_path / "run"
    base = [*args_for(name, corpus, codec_dir), "--out", str(run), "--steps", "2"]
    MODULES[name].main(base)
    before = digest(run)
    with pytest.raises(CheckpointError) as e:
        MODULES[name].main([*base, "--lr", "0.5"])
    assert str(run) in str(e.value) and "another configuration" in str(e.value) and "lr" in str(e.value)
    with pytest.raises(CheckpointError, match="another configuration"):
        MODULES[name].main([*base, "--seed", "7", "--export-only", "--export", str(tmp_path / "exp")])
    assert digest(run) == before and not (tmp_path / "exp").exists()


def test_a_failed_start_does_not_bind_the_run_folder(tmp_path, corpus, codec_dir):
    """A first start that fails before any checkpoint (a mistyped --corpus) leaves no
    configuration that would refuse the corrected command."""
    run = tmp_path / "run"
    base = [*args_for("music-codec", corpus, codec_dir), "--out", str(run), "--steps", "2"]
    with pytest.raises(CorpusError, match="not found"):
        music_codec.main([*base, "--corpus", str(tmp_path / "typo")])
    assert music_codec.main(base) == 0
    assert json.loads((run / "run.json").read_text())["corpus"] == str(corpus)


class _Planted:
    """Unpickling this creates the marker file: what a malicious last.pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", MODULES)
def test_planted_pickle_is_never_loaded(tmp_path, corpus, codec_dir, name):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned"
    for old_name in ("last.pt", "checkpoint.pt"):  # the checkpoint names of the old trainers
        (run / old_name).write_bytes(pickle.dumps(_Planted(marker)))
    base = [*args_for(name, corpus, codec_dir), "--out", str(run), "--steps", "2"]
    with pytest.raises(CheckpointError, match="no checkpoint to export"):
        MODULES[name].main([*base, "--export-only", "--export", str(tmp_path / "exp")])
    assert not (run / "run.json").exists()  # a failed --export-only leaves the folder as it was
    MODULES[name].main(base)
    assert not marker.exists()
    assert log_rows(run)[0]["step"] == 1  # trained from scratch: nothing was resumed


def test_trainers_never_unpickle():
    """No trainer calls torch.load / torch.save / pickle (issue 19: a planted last.pt ran code)."""
    for path in sorted((ROOT / "src" / "anygpt" / "train").glob("*.py")):
        text = path.read_text()
        for needle in ("torch.load(", "torch.save(", "import pickle"):
            assert needle not in text, f"{path.name}: {needle}"
    assert not (ROOT / "src" / "anygpt" / "train" / "common.py").exists()


# ----------------------------------------------------------------- flags

@pytest.mark.parametrize("name", MODULES)
def test_one_flag_vocabulary_without_old_spellings(name, capsys):
    p = MODULES[name].build_parser()
    text = p.format_help()
    for flag in ("--corpus", "--max-minutes", "--no-progress", "--export", "--export-only", "--threads", "--seed",
                 "--steps", "--save-every", f"anygpt train {name} --"):
        assert flag in text, (name, flag)
    for old in ("--data", "--minutes", "--quiet", "--ship"):
        with pytest.raises(SystemExit) as e:
            p.parse_args([old, "x"] if old in ("--data", "--minutes") else [old])
        assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    a = p.parse_args([])
    assert a.threads == 1 and a.seed == 0 and str(a.corpus) == "data/tiny" and a.export is None


@pytest.mark.parametrize("name", ["speech-tokenizer", "soundstorm", "image-tokenizer"])
def test_missing_corpus_is_named(tmp_path, codec_dir, name):
    with pytest.raises(AnyGPTError) as e:  # CorpusError, or the manifest reader's ManifestError
        MODULES[name].main([a for a in args_for(name, tmp_path / "none", codec_dir) if a != "--synthetic"]
                           + ["--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--steps", "1"])
    assert str(e.value).startswith(str(tmp_path / "none")) and "manifest" in str(e.value)


def test_cli_reports_a_missing_corpus_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anygpt.cli", "train", "music-codec", "--corpus", str(tmp_path / "none"),
                           "--out", str(tmp_path / "r"), "--steps", "1", *RUN], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"anygpt train music-codec: {tmp_path / 'none' / 'music' / 'manifest.jsonl'}: not found")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_only_needs_export(tmp_path, corpus, codec_dir):
    with pytest.raises(AnyGPTError, match="--export-only needs --export"):
        music_codec.main([*args_for("music-codec", corpus, codec_dir), "--out", str(tmp_path / "r"), "--export-only"])


def test_content_unit_layer1_starts_from_a_codec_and_encodes_its_units(tmp_path, codec_dir):
    """--layer1 units (issue 23): the content units are fitted once and kept beside the run, the
    export's layer 1 is those units of the audio (Whisper features -> nearest centroid), and
    --init carries every weight that still fits (the acoustic layers and the trunk)."""
    from anygpt.nn.speech_codec import load_codec
    from anygpt.nn.weights import read_safetensors

    out = tmp_path / "units"
    speech_tokenizer.main(["--synthetic", *SPEECH_ARGS, "--layer1", "units", "--units", "8", "--init", str(codec_dir),
                           "--out", str(out), "--steps", "2", "--export", str(out / "model"), *RUN])
    fitted = read_safetensors(out / "content-units.safetensors")
    codec = load_codec(out / "model")
    assert codec.cfg.layer1 == "units" and codec.cfg.semantic_codebook_size == 8
    assert torch.equal(codec.units.centroids, fitted["centroids"].float())  # the units it trained with
    start = load_codec(codec_dir)
    # the loaded trunk moved only by two small steps; a fresh one would differ entirely
    moved = (codec.enc_in.weight.float() - start.enc_in.weight.float()).abs().max()
    assert moved < 0.05 * start.enc_in.weight.float().abs().max()
    wav = torch.from_numpy(speech_tokenizer.synthetic_speech(1, 1.0, seed=5)[0][0])[None, None]
    codes = load_tokenizer("speech", "compact", path=out / "model").encode(wav)
    assert codes.shape == (1, 3, 25) and torch.equal(codes[0, 0], codec.content_units(wav)[0])
    assert load_tokenizer("speech", "compact", path=out / "model").token_spec.codebook_size == 8


def test_unit_sentences_are_spoken_in_unit_voices_drawn_per_sentence():
    """--unit-voices V: each fitting sentence in V UNIT_VOICES voices, drawn per sentence and the
    same on a rerun (lexical breadth at the synthesis cost of fewer voices); default: every voice."""
    import argparse
    from types import SimpleNamespace

    clips = [SimpleNamespace(text=t) for t in ("A red ball.", "A red ball.", "Two cats sat.", "Rain fell.")]
    args = argparse.Namespace(unit_sentences=3, unit_voices=2, seed=0)
    feats, phonemes = speech_tokenizer.unit_sentence_features(args, clips, 2)
    assert phonemes[0] == ["a#", "r", "E", "d", "b", "O:", "l"] and len(phonemes) == 3  # each sentence read by espeak-ng
    by_sentence = {}
    for voice, s in feats:
        by_sentence.setdefault(s, set()).add(voice)
    assert sorted(by_sentence) == [0, 1, 2] and all(len(v) == 2 for v in by_sentence.values())
    names = {v for _, v in speech_tokenizer.UNIT_VOICES}
    assert all(v <= names for v in by_sentence.values())
    assert set(speech_tokenizer.unit_sentence_features(args, clips, 2)[0]) == set(feats)
    assert all(f.ndim == 2 and f.shape[1] == 384 for f in feats.values())


def test_phone_units_set_the_codebook_and_context_and_refuse_another_size():
    import argparse

    from anygpt.errors import UsageError
    from anygpt.nn.content_units import PHONES

    def config(**kw):
        a = argparse.Namespace(**{"init": None, "config": "{}", "seed": 0, "layer1": "units", "units": None,
                                  "unit_objective": "voices", "unit_context": None, **kw})
        return speech_tokenizer.codec_config(a)

    voices, phones = config(), config(unit_objective="phones")
    assert (voices.semantic_codebook_size, voices.units_objective, voices.units_context) == (256, "voices", 0)
    assert (phones.semantic_codebook_size, phones.units_objective, phones.units_context) == (len(PHONES), "phones", 2)
    assert config(unit_objective="phones", unit_context=0).units_context == 0
    with pytest.raises(UsageError, match="one per phone"):
        config(unit_objective="phones", units=256)
