"""Shared by the data tests: one micro build per test session (it takes about 15 s), and a small
image corpus with a stand-in tokenizer the tests register ("test-grid")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from grid_tokenizer import GridTokenizer
from PIL import Image

from anygpt.data import build_corpora
from anygpt.modalities import get_modality, register_tokenizer


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("micro")
    build_corpora("micro", out, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    register_tokenizer("image", "test-grid", GridTokenizer)
    root = tmp_path_factory.mktemp("corpus")
    (root / "images" / "files").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        arr = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / "files" / f"{i}.png")
        rows.append({"id": f"img{i}", "path": f"files/{i}.png", "caption": f"picture number {i}",
                     "split": "test" if i >= 36 else "train"})
    (root / "images" / "files" / "bad.png").write_bytes(b"not a png")
    rows.append({"id": "bad", "path": "files/bad.png", "caption": "broken", "split": "train"})
    (root / "images" / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "text").mkdir()
    (root / "text" / "manifest.jsonl").write_text("\n".join(
        json.dumps({"id": f"t{i}", "text": f"Sentence {i} says something plain.", "split": "train"}) for i in range(300)) + "\n")
    yield root
    get_modality("image").tokenizer_loaders.pop("test-grid", None)
