"""The one export writer (anygpt.nn.weights.save_weights): each trainer's exporter re-exports
the shipped tokenizers to the same bytes and config fields, and a folder is written whole or
not at all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from anygpt.asset_paths import (IMAGE_TOKENIZER_TINY_DIR, MUSIC_CODEC_TINY_DIR, SOUNDSTORM_TINY_DIR,
                                SPEECH_TOKENIZER_TINY_DIR)
from anygpt.modalities import load_tokenizer
from anygpt.nn.weights import read_meta, save_weights


def _same_folder(shipped: Path, exported: Path) -> None:
    """Weights byte for byte, JSON files field for field (key order aside)."""
    names = sorted(p.name for p in shipped.iterdir() if p.suffix in (".safetensors", ".json"))
    assert names == sorted(p.name for p in exported.iterdir()), (names, list(exported.iterdir()))
    for name in names:
        a, b = shipped / name, exported / name
        if name.endswith(".json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text()), name
        else:
            assert a.read_bytes() == b.read_bytes(), name


def test_music_codec_reexport_is_identical(tmp_path):
    from anygpt.train.music_codec import export_codec

    tok = load_tokenizer("music", "compact")
    export_codec(tok.codec, tmp_path / "m", read_meta(MUSIC_CODEC_TINY_DIR)["training"])
    _same_folder(MUSIC_CODEC_TINY_DIR, tmp_path / "m")


def test_speech_codec_and_soundstorm_reexport_are_identical(tmp_path):
    from anygpt.nn.speech_codec import save_codec
    from anygpt.train.soundstorm import export_soundstorm

    tok = load_tokenizer("speech", "compact")
    meta = read_meta(SPEECH_TOKENIZER_TINY_DIR)
    save_codec(tok.codec, tmp_path / "codec", {k: v for k, v in meta.items() if k != "codec"})
    _same_folder(SPEECH_TOKENIZER_TINY_DIR, tmp_path / "codec")
    meta = read_meta(SOUNDSTORM_TINY_DIR)
    export_soundstorm(tok.acoustic, tmp_path / "storm", tok.default_prompt,
                      {k: v for k, v in meta.items() if k != "soundstorm"})
    _same_folder(SOUNDSTORM_TINY_DIR, tmp_path / "storm")


def test_image_tokenizer_reexport_is_identical(tmp_path):
    from anygpt.train.image_tokenizer import export

    tok = load_tokenizer("image", "compact")
    export(tok.model, tmp_path / "i", json.loads((IMAGE_TOKENIZER_TINY_DIR / "training.json").read_text()), half=True)
    _same_folder(IMAGE_TOKENIZER_TINY_DIR, tmp_path / "i")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_folder_is_replaced_whole_keeping_its_readme(tmp_path):
    folder = tmp_path / "model"
    save_weights(folder, {"w": torch.ones(2)}, {"v": 1}, files={"extra.safetensors": {"x": torch.zeros(1)}})
    (folder / "README.md").write_text("how this was trained")
    save_weights(folder, {"w": torch.full((2,), 2.0)}, {"v": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert read_meta(folder) == {"v": 2} and (folder / "README.md").read_text() == "how this was trained"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left behind


def test_failed_export_leaves_the_old_folder(tmp_path):
    folder = tmp_path / "model"
    save_weights(folder, {"w": torch.ones(2)}, {"v": 1})
    before = _digest(folder)
    with pytest.raises(TypeError):
        save_weights(folder, {"w": torch.zeros(2)}, {"v": 2}, files={"bad.json": {"x": object()}})
    assert _digest(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
