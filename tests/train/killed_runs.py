"""The instrument of the exact-resume tests: a training command killed with SIGKILL once it has
written a given checkpoint, then run again to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_then_rerun(cmd: list[str], env: dict, run: Path, kill_after: int, steps: int) -> None:
    """Start `cmd` (a run of `steps` steps in folder `run`), kill -9 it as soon as its
    checkpoint of step `kill_after` exists, check it had not finished, and rerun it; the rerun
    must resume and succeed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / f"step-{kill_after:08d}").exists():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert done and done[-1] < f"step-{steps:08d}", f"the run finished before the kill: {done}"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
