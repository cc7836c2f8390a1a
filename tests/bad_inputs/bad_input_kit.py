"""Helpers of the bad-input suite (a module name no other test folder uses): running a command
in this process, the clean-message check, the process check, and small inputs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    assert re.search(pattern, last), f"{last!r} does not match {pattern!r}"
    assert res.rc == code, f"exit {res.rc}, expected {code}: {last}"


def children(pid: int | None = None) -> set[int]:
    """Pids of the live children of process `pid` (default: this process), from Linux /proc."""
    me, out = pid or os.getpid(), set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(d.name))
    return out


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
