"""Killed jobs leave no process behind and lose no finished work [F4]. These run the command in a
subprocess (the one thing here that needs one): start it, wait until its worker processes exist,
kill it (SIGKILL or SIGTERM), then check that every worker is gone within seconds and that
nothing writes into the output folder any more; a rerun then finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_input_kit import manifest, record, voice

from anygpt.data.codes_store import CodesStore, tokenize_corpus

SRC = Path(__file__).resolve().parents[2] / "src"


def _stat(pid: int) -> list[str] | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (s := _stat(int(d.name))) and int(s[1]) == pid and s[0] != "Z":
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    s = _stat(pid)
    return s is not None and s[0] != "Z"


def _spawn(*argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "anygpt.cli", *map(str, argv)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when_workers_run(proc: subprocess.Popen, sig: int, workers: int = 2, timeout: float = 60) -> list[int]:
    """Wait until `proc` has `workers` child processes, send it `sig`, reap it; -> the workers."""
    deadline = time.time() + timeout
    kids: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        kids = _children(proc.pid)
        if len(kids) >= workers:
            break
        time.sleep(0.05)
    assert len(kids) >= workers, f"the workers never started ({proc.stderr.read().decode()[-500:]})"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    return kids


def _gone(pids: list[int], within: float = 10.0) -> list[int]:
    deadline = time.time() + within
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids if _alive(p)]
    for p in left:  # never leave them running, even when the test fails
        os.kill(p, signal.SIGKILL)
    return left


@pytest.fixture
def clips(tmp_path) -> Path:
    """A speech corpus of 60 clips of 2 s (enough work for two workers to be caught running)."""
    corpus = tmp_path / "speech"
    (corpus / "wavs").mkdir(parents=True)
    rows = []
    for i in range(60):
        sf.write(corpus / "wavs" / f"{i}.wav", voice(2.0, f0=100 + i, seed=i), 16000, subtype="PCM_16")
        rows.append({"id": f"c{i:02d}", "split": "train", **record(corpus, f"wavs/{i}.wav")})
    manifest(corpus / "manifest.jsonl", rows)
    return corpus


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_tokenize_leaves_no_worker_and_resumes(clips, tmp_path, sig):
    out = tmp_path / "codes"
    argv = ["tokenize", "--corpus", clips, "--modality", "speech", "--out", out, "--workers", "2",
            "--items-per-shard", "4", "--no-progress"]
    workers = _kill_when_workers_run(_spawn(*argv), sig)
    assert _gone(workers) == [], "tokenize workers outlived the killed command"
    rerun = _spawn(*argv)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-2000:]
    store = CodesStore(out)
    assert len(store) == 60
    tokenize_corpus(clips, "speech", "compact", tmp_path / "reference", workers=0, items_per_shard=4, progress=False)
    ref = dict(CodesStore(tmp_path / "reference").items())
    assert all(np.array_equal(codes.numpy(), ref[i].numpy()) for i, codes in store.items())


def test_killed_data_build_leaves_no_worker_writing(tmp_path):
    out = tmp_path / "corpus"
    proc = _spawn("data", "build", "--preset", "micro", "--out", out, "--only", "music", "--workers", "2",
                  "--no-progress")
    workers = _kill_when_workers_run(proc, signal.SIGTERM)
    assert _gone(workers) == [], "data build workers outlived the killed command"
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    time.sleep(2.0)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before, "something still writes into the output"
