"""The kit of the bad-input suite: small good inputs and their broken versions (corrupt, empty,
truncated, huge, wrong type, traversal), made once per session, and the check that no process
is left behind after any case (the helpers are in bad_input_kit.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_input_kit import children, manifest, png_header, record, voice
from PIL import Image


@pytest.fixture(autouse=True)
def no_process_left_behind():
    before = children()
    yield
    assert children() <= before, "a worker process outlived its command"


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kit")
    # a speech corpus of three clips, and its broken versions
    speech = root / "speech"
    (speech / "wavs").mkdir(parents=True)
    rows = []
    for i in range(3):
        sf.write(speech / "wavs" / f"{i}.wav", voice(1.0, f0=120 + 30 * i, seed=i), 16000, subtype="PCM_16")
        rows.append({"id": f"clip{i}", "text": f"clip number {i}", "speaker": f"s{i % 2}", "split": "test",
                     **record(speech, f"wavs/{i}.wav")})
    manifest(speech / "manifest.jsonl", rows)
    media = root / "media"
    media.mkdir()
    good = (speech / "wavs" / "0.wav").read_bytes()
    (media / "cut.wav").write_bytes(good[: len(good) // 3])  # a truncated copy
    (media / "empty.wav").write_bytes(b"")
    (media / "text.wav").write_text("this is not audio\n")
    sf.write(media / "long.wav", np.zeros(8000 * 600, dtype=np.float32), 8000, subtype="PCM_U8")  # 10 minutes
    png_header(media / "huge.png", 20000, 20000)
    png_header(media / "big.png", 10000, 10000)
    (media / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    Image.new("RGB", (16, 16), (200, 50, 50)).save(media / "red.png")
    (media / "notes.txt").write_text("not a picture")
    (media / "a-file").write_text("a file where a folder is expected")
    (media / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    # a speech corpus whose manifest names a clip that was cut after the manifest was written
    cut = root / "speech-cut"
    (cut / "wavs").mkdir(parents=True)
    (cut / "wavs" / "0.wav").write_bytes(good[: len(good) // 3])
    manifest(cut / "manifest.jsonl", [{"id": "clip0", "text": "clip", "speaker": "s0", "split": "test",
                                       "bytes": len(good), "duration": 1.0, "path": "wavs/0.wav"}])
    # an image corpus
    images = root / "images"
    (images / "files").mkdir(parents=True)
    rows = []
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 100, 200 - 40 * i)).save(images / "files" / f"{i}.png")
        rows.append({"id": f"img{i}", "caption": f"a plain picture {i}", "split": "train", **record(images, f"files/{i}.png")})
    manifest(images / "manifest.jsonl", rows)
    return root


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory) -> Path:
    """A model folder in our format (random-64x2, saved)."""
    from anygpt.loaders import load_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    load_model("random-64x2").save_pretrained(folder)
    return folder
