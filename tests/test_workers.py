"""anygpt.workers: a process pool whose workers die with the process that started them, however
it dies (here: SIGKILL, which gives the parent no chance to shut its pool down)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from anygpt.workers import process_pool

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}

_STATE = {}


def _set(value: str) -> None:
    _STATE["value"] = value


def _get(_: int) -> tuple[str | None, int]:
    return _STATE.get("value"), os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_pool_runs_the_initializer_in_every_worker():
    with process_pool(2, initializer=_set, initargs=("ready",)) as pool:
        results = list(pool.map(_get, range(6)))
    assert {value for value, _ in results} == {"ready"}
    assert os.getpid() not in {pid for _, pid in results}


def test_workers_die_when_the_parent_is_killed(tmp_path):
    pids = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import os, time
        from anygpt.workers import process_pool

        def work(_):
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(600)

        if __name__ == "__main__":
            pool = process_pool(2)
            for i in range(2):
                pool.submit(work, i)
            time.sleep(600)
    """)
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], env=ENV)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
            time.sleep(0.1)
        workers = [int(p) for p in pids.read_text().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for p in left:  # do not leave them behind if the assertion fails
        os.kill(p, signal.SIGKILL)
    assert left == []


def test_a_child_whose_parent_is_already_gone_exits():
    # the parent pid it was given is not its parent: as if the parent died before prctl
    code = "import os; from anygpt.workers import die_with_parent; die_with_parent(os.getppid() + 1); print('lived')"
    run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "lived" not in run.stdout


def test_die_with_parent_keeps_a_child_whose_parent_lives():
    code = "import os; from anygpt.workers import die_with_parent; die_with_parent(os.getppid()); print('lived')"
    run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "lived"
