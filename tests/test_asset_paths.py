"""anygpt.asset_paths: the shipped asset folders and their retrain commands. A shipped file that
is missing or damaged is an error naming it and the command that retrains it, never a silent
fallback; each compact tokenizer's loader (beside it in anygpt.modalities) reads its folder."""

from __future__ import annotations

import shlex
import shutil

import pytest

from anygpt import asset_paths
from anygpt.errors import CheckpointError
from anygpt.modalities import image_tokenizers, load_tokenizer, music_tokenizers, speech_compact
from anygpt.train import cli as train_cli

TRAINED = [c for c in asset_paths.RETRAIN.values() if c.startswith("anygpt train ")]


def test_shipped_names_the_missing_file_and_the_retrain_command(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert asset_paths.shipped(tmp_path, ("config.json",), "anygpt train x") == tmp_path
    with pytest.raises(CheckpointError) as e:
        asset_paths.shipped(tmp_path, ("config.json", "model.safetensors"), "anygpt train x --out runs/x")
    assert str(e.value) == (f"{tmp_path / 'model.safetensors'}: a shipped file is missing from this installation; "
                            "reinstall anygpt, or retrain and export it with `anygpt train x --out runs/x`")


def test_shipped_model_folder(monkeypatch, tmp_path):
    assert asset_paths.shipped_model_folder("some/folder") is None
    assert asset_paths.shipped_model_folder(asset_paths.DEFAULT_MODEL) == asset_paths.ANYGPT_TINY_DIR
    monkeypatch.setitem(asset_paths.MODEL_FOLDERS, "empty", tmp_path)
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'config.json'}: a shipped file is missing"):
        asset_paths.shipped_model_folder("empty")


@pytest.mark.parametrize("retrain", TRAINED)
def test_retrain_commands_name_a_trainer_its_visible_flags_and_their_folder(retrain):
    assert len(TRAINED) == 9
    words = shlex.split(retrain)
    assert words[:2] == ["anygpt", "train"] and words[2] in train_cli.TRAINERS
    assert "--corpus" in words and "--export" in words  # not the hidden old --data / --ship
    export = words[words.index("--export") + 1]
    assert export.startswith("src/anygpt/assets/") and (asset_paths.ASSETS / export.split("/")[-1]).is_dir()


@pytest.mark.parametrize("modality, loader, module, constant, files", [
    ("image", "compact", image_tokenizers, "IMAGE_TOKENIZER_TINY_DIR", ("config.json", "model.safetensors")),
    ("image", "grid", image_tokenizers, "IMAGE_TOKENIZER_GRID_DIR", ("config.json", "model.safetensors")),
    ("speech", "compact", speech_compact, "SPEECH_TOKENIZER_TINY_DIR", ("config.json", "model.safetensors")),
    ("speech", "compact", speech_compact, "SOUNDSTORM_TINY_DIR", ("config.json", "model.safetensors", "prompt.safetensors")),
    ("speech", "units", speech_compact, "SPEECH_TOKENIZER_UNITS_DIR", ("config.json", "model.safetensors")),
    ("speech", "units", speech_compact, "SOUNDSTORM_UNITS_DIR", ("config.json", "model.safetensors", "prompt.safetensors")),
    ("speech", "phones", speech_compact, "SPEECH_TOKENIZER_PHONES_DIR", ("config.json", "model.safetensors")),
    ("speech", "phones", speech_compact, "SOUNDSTORM_PHONES_DIR", ("config.json", "model.safetensors", "prompt.safetensors")),
    ("music", "compact", music_tokenizers, "MUSIC_CODEC_TINY_DIR", ("config.json", "model.safetensors")),
])
def test_a_missing_shipped_file_fails(tmp_path, monkeypatch, modality, loader, module, constant, files):
    shipped = getattr(asset_paths, constant)
    assert getattr(module, constant) == shipped  # the loader reads the folder asset_paths names
    for f in files:
        assert (shipped / f).is_file(), f"{shipped / f} is missing from this checkout"
        folder = tmp_path / f"{constant}-{f}"
        shutil.copytree(shipped, folder)
        (folder / f).unlink()
        monkeypatch.setattr(module, constant, folder)
        with pytest.raises(CheckpointError, match=f"{folder / f}: a shipped file is missing"):
            load_tokenizer(modality, loader)


def test_a_damaged_shipped_file_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "music"
    shutil.copytree(asset_paths.MUSIC_CODEC_TINY_DIR, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # a truncated copy
    monkeypatch.setattr(music_tokenizers, "MUSIC_CODEC_TINY_DIR", folder)
    with pytest.raises(CheckpointError, match=f"{weights}: not a readable safetensors file"):
        load_tokenizer("music", "compact")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{folder / 'config.json'}: not a valid JSON config"):
        load_tokenizer("music", "compact")


def test_every_shipped_folder_has_a_readme_with_its_retrain_command():
    folders = sorted(p for p in asset_paths.ASSETS.iterdir() if p.is_dir())
    assert folders == sorted(asset_paths.RETRAIN)
    for folder in folders:
        readme = folder / "README.md"
        assert readme.is_file(), f"{readme} is missing"
        text = " ".join(readme.read_text(encoding="utf-8").split())
        assert asset_paths.RETRAIN[folder] in text, f"{readme} does not give `{asset_paths.RETRAIN[folder]}`"
        for old in ('"tiny")', "Tiny", "speech_tiny", "nn.music_codec", " --ship", "anygpt.loaders:"):
            assert old not in text, f"{readme} names the old {old!r}"
