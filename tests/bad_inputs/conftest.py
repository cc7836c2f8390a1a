"""The kit of the bad-input suite: small good inputs and their broken versions (corrupt, empty,
truncated, huge, wrong type, traversal), made once per session, and the checks every case makes:
a clean one-line message with no traceback, the output unchanged or absent, no process left."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from anygpt import cli


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run(capsys, *argv) -> Result:
    """`anygpt ARGV` in this process, as the command runs it."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Result(rc, captured.out, captured.err)


def assert_clean(res: Result, code: int, pattern: str) -> None:
    """Exit status `code`; the last line on stderr is `anygpt COMMAND: ...` matching pattern; no
    traceback anywhere."""
    assert "Traceback" not in res.err + res.out, res.err
    lines = res.err.strip().splitlines()
    assert lines, f"nothing on stderr (exit {res.rc})"
    last = lines[-1]
    assert last.startswith(("anygpt ", "anygpt:")), last
    import re

    assert re.search(pattern, last), f"{last!r} does not match {pattern!r}"
    assert res.rc == code, f"exit {res.rc}, expected {code}: {last}"


def children() -> set[int]:
    """Pids of this process's live children (Linux /proc)."""
    me, out = os.getpid(), set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(d.name))
    return out


@pytest.fixture(autouse=True)
def no_process_left_behind():
    before = children()
    yield
    assert children() <= before, "a worker process outlived its command"


# ----------------------------------------------------------------------------- inputs
def voice(seconds: float = 1.0, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8)) * 0.2 + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height pixels but holds almost none: its header is all a
    reader sees before it decodes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def manifest(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def record(folder: Path, rel: str, **extra) -> dict:
    data = (folder / rel).read_bytes()
    return {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **extra}


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
    """A model folder in our format (tiny-random, saved)."""
    from anygpt.loaders import load_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    load_model("tiny-random").save_pretrained(folder)
    return folder
