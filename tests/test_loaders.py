"""anygpt.loaders: model names, the shipped asset folders, and the compact tokenizers' loaders.
A shipped file that is missing or damaged is an error naming it, never a silent fallback."""

from __future__ import annotations

import shutil

import pytest

from anygpt import loaders
from anygpt.errors import CheckpointError, UsageError
from anygpt.modalities import load_tokenizer
from anygpt.modalities.registry import canonical_tokenizer_name


def test_model_names_and_folders(tmp_path):
    assert loaders.DEFAULT_MODEL in loaders.MODEL_NAMES and "tiny-random" in loaders.MODEL_NAMES
    with pytest.raises(CheckpointError, match="model folder not found; give a folder or one of anygpt-tiny"):
        loaders.resolve_model_path(tmp_path / "nothing")
    assert loaders.resolve_model_path(tmp_path) == tmp_path
    model = loaders.load_model("tiny-random", template="AnyGPT")
    assert model.template.name == "AnyGPT" and "image" in model.layout.modalities


@pytest.mark.parametrize("modality, constant, files", [
    ("image", "IMAGE_TOKENIZER_TINY_DIR", ("config.json", "model.safetensors")),
    ("speech", "SPEECH_TOKENIZER_TINY_DIR", ("config.json", "model.safetensors")),
    ("speech", "SOUNDSTORM_TINY_DIR", ("config.json", "model.safetensors", "prompt.safetensors")),
    ("music", "MUSIC_CODEC_TINY_DIR", ("config.json", "model.safetensors")),
])
def test_a_missing_shipped_file_fails(tmp_path, monkeypatch, modality, constant, files):
    shipped = getattr(loaders, constant)
    for f in files:
        assert (shipped / f).is_file(), f"{shipped / f} is missing from this checkout"
        folder = tmp_path / f"{constant}-{f}"
        shutil.copytree(shipped, folder)
        (folder / f).unlink()
        monkeypatch.setattr(loaders, constant, folder)
        with pytest.raises(CheckpointError, match=f"{folder / f}: a shipped file is missing"):
            load_tokenizer(modality, "compact")


def test_a_damaged_shipped_file_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "music"
    shutil.copytree(loaders.MUSIC_CODEC_TINY_DIR, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # a truncated copy
    monkeypatch.setattr(loaders, "MUSIC_CODEC_TINY_DIR", folder)
    with pytest.raises(CheckpointError, match=f"{weights}: not a readable safetensors file"):
        load_tokenizer("music", "compact")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{folder / 'config.json'}: not a valid JSON config"):
        load_tokenizer("music", "compact")


def test_old_tokenizer_name_and_options():
    for modality in ("image", "speech", "music"):
        assert canonical_tokenizer_name(modality, "tiny") == "compact"
    assert type(load_tokenizer("image", "tiny")) is type(load_tokenizer("image", "compact"))
    with pytest.raises(UsageError, match=r"music tokenizer 'compact': .*unexpected keyword.*its options: path, device"):
        load_tokenizer("music", "compact", foo="1")
