"""What every corpus builder shares: seeds, hashes, tool checks, the done-log, a parallel map.

A corpus build is a deterministic *plan* (a list of jobs, each a JSON-able dict with a
unique "id") followed by running the jobs that are not done yet. A job's worker writes its
file(s) atomically and returns a manifest record, or raises JobFailed/any error; only the
main process appends to the done-log, and only after the worker has returned, so an entry
in the done-log always means a complete file. A killed build loses at most the jobs in
flight; a half-written done-log line is ignored on the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from anygpt.errors import AnyGPTError
from anygpt.files import append_jsonl, remove_stale_temps, write_jsonl
from anygpt.manifest import iter_jsonl, read_jsonl  # noqa: F401  (read_jsonl: used by the corpus builders)
from anygpt.workers import process_pool

log = logging.getLogger("anygpt.data")

SETUP_HINT = "bash scripts/setup.sh"


class MissingDependencyError(AnyGPTError, RuntimeError):
    """A system tool, package or asset that a corpus needs is not installed."""


class JobFailed(AnyGPTError, RuntimeError):
    """A single item could not be made (bad asset, voice that fails, score that fails)."""


class ToolTimeout(AnyGPTError, RuntimeError):
    """A tool ran out of time on every attempt: a loaded machine, not the item. The job is not
    recorded as done or skipped, so the next run makes it (a build's output must not depend on
    how busy the machine was)."""


TOOL_ATTEMPTS = 3  # a timeout is retried with twice the time, up to this many attempts


def run_tool(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True) with `timeout` seconds, doubled on each retry;
    ToolTimeout after TOOL_ATTEMPTS attempts."""
    for attempt in range(TOOL_ATTEMPTS):
        try:
            return subprocess.run(cmd, capture_output=True, timeout=timeout * 2 ** attempt, **kw)
        except subprocess.TimeoutExpired:
            log.warning("%s timed out after %.0f s (attempt %d of %d)", cmd[0], timeout * 2 ** attempt, attempt + 1,
                        TOOL_ATTEMPTS)
    raise ToolTimeout(f"{cmd[0]} timed out {TOOL_ATTEMPTS} times (last after {timeout * 2 ** (TOOL_ATTEMPTS - 1):.0f} s)")


def require_tool(binary: str, package: str) -> str:
    """Path of `binary` on PATH, or MissingDependencyError naming the Debian package."""
    found = shutil.which(binary)
    if not found:
        raise MissingDependencyError(
            f"`{binary}` not found on PATH. It comes with the Debian package `{package}`; "
            f"install it with `{SETUP_HINT}` (or `sudo apt-get install {package}`)."
        )
    return found


def require_path(path: Path, package: str, what: str, how: str | None = None) -> Path:
    """`path` if it exists, else MissingDependencyError naming the package that provides it."""
    if not Path(path).exists():
        raise MissingDependencyError(
            f"{what} not found at {path}. It comes with the package `{package}`; "
            f"install it with `{SETUP_HINT}`" + (f" (or `{how}`)." if how else ".")
        )
    return Path(path)


def sub_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from seed and keys (stable across runs, machines, processes)."""
    h = hashlib.sha256(json.dumps([seed, *map(str, keys)]).encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def sub_rng(seed: int, *keys: object) -> random.Random:
    """random.Random seeded with sub_seed(seed, *keys)."""
    return random.Random(sub_seed(seed, *keys))


def unit_hash(*keys: object) -> float:
    """A number in [0, 1) determined by keys: for stable hash-based split assignment."""
    return sub_seed(0, *keys) / 2**63


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class DoneLog:
    """Append-only JSONL of finished jobs: {"id", "status": "ok"|"skipped", "record"|"reason"}.

    Lines that do not parse (a write cut off by a kill) are ignored. An "ok" entry whose
    file is missing or whose size differs is treated as not done.
    """

    path: Path
    entries: dict[str, dict] = field(default_factory=dict)

    def load(self, corpus_dir: Path) -> "DoneLog":
        self.entries = {}
        for _, entry in iter_jsonl(self.path, lenient=True):
            jid = entry.get("id")
            if jid is None:
                continue
            if entry.get("status") == "ok" and not _files_intact(corpus_dir, entry.get("record") or {}):
                self.entries.pop(jid, None)
                continue
            self.entries[jid] = entry
        return self

    def append(self, entry: dict) -> None:
        append_jsonl(self.path, entry, sort_keys=True, sync=True)
        self.entries[entry["id"]] = entry


def _files_intact(corpus_dir: Path, record: dict) -> bool:
    for key, size_key in (("path", "bytes"), ("original_path", "original_bytes"), ("path_16k", "bytes_16k")):
        rel = record.get(key)
        if rel is None:
            continue
        p = corpus_dir / rel
        if not p.is_file() or (size_key in record and p.stat().st_size != record[size_key]):
            return False
    return True


def _run_batch(args: tuple[Callable[[list[dict], Path], list[dict]], list[dict], str]) -> list[dict]:
    """Run worker on a batch; turn exceptions into 'skipped' entries per job ('retry' for a tool
    that timed out)."""
    worker, jobs, corpus_dir = args
    try:
        return worker(jobs, Path(corpus_dir))
    except ToolTimeout as e:
        return [retry_entry(j, str(e)) for j in jobs]
    except Exception as e:  # the whole batch failed: mark each job
        reason = f"{type(e).__name__}: {e}".strip()[:300]
        log.debug("batch failed: %s", traceback.format_exc())
        return [{"id": j["id"], "status": "skipped", "reason": reason, "split": j.get("split")} for j in jobs]


def run_jobs(
    name: str,
    jobs: list[dict],
    worker: Callable[[list[dict], Path], list[dict]],
    corpus_dir: Path,
    workers: int,
    batch_size: int = 8,
    group_key: Callable[[dict], object] | None = None,
    progress: bool = True,
) -> DoneLog:
    """Run the jobs of `jobs` not yet in corpus_dir/.done.jsonl with `worker`, in parallel.

    worker(batch, corpus_dir) -> one entry per job: {"id", "status": "ok", "record": {...}}
    or {"id", "status": "skipped", "reason": str}. Batches hold jobs with the same
    group_key (e.g. one voice), so a worker can start a tool once per batch.
    """
    corpus_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(corpus_dir)
    done = DoneLog(corpus_dir / ".done.jsonl").load(corpus_dir)
    todo = [j for j in jobs if j["id"] not in done.entries]
    batches = list(_batches(todo, batch_size, group_key))
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"{name:<7}", unit="item",
               disable=not progress, dynamic_ncols=True, leave=True)
    retries = []
    try:
        for results in _imap(batches, worker, corpus_dir, workers):
            for entry in results:
                if entry["status"] == "retry":  # not logged: the next run makes it
                    retries.append(entry)
                else:
                    done.append(entry)
            bar.update(len(results))
    finally:
        bar.close()
    if retries:
        raise ToolTimeout(f"{corpus_dir}: {len(retries)} items were not made because a tool timed out "
                          f"({retries[0]['reason']}); the machine may be busy: run the same command again to "
                          "make them (finished items are kept)")
    return done


def _batches(jobs: list[dict], size: int, key: Callable[[dict], object] | None) -> Iterator[list[dict]]:
    groups: dict[object, list[dict]] = {}
    for j in jobs:
        groups.setdefault(key(j) if key else None, []).append(j)
    for group in groups.values():
        for i in range(0, len(group), size):
            yield group[i:i + size]


def _imap(batches: list[list[dict]], worker, corpus_dir: Path, workers: int) -> Iterable[list[dict]]:
    args = [(worker, b, str(corpus_dir)) for b in batches]
    if workers <= 1 or len(batches) <= 1:
        yield from map(_run_batch, args)
        return
    with process_pool(workers) as pool:
        yield from pool.map(_run_batch, args)


def write_jsonl_atomic(path: Path, records: Iterable[dict]) -> int:
    """Write records as JSONL (keys sorted) to path atomically; returns the number written."""
    return write_jsonl(path, records, sort_keys=True)


def ok_entry(job: dict, record: dict) -> dict:
    return {"id": job["id"], "status": "ok", "record": record}


def retry_entry(job: dict, reason: str) -> dict:
    """A job to make again on the next run (never written to the done-log)."""
    return {"id": job["id"], "status": "retry", "reason": reason[:300]}


def skip_entry(job: dict, reason: str) -> dict:
    return {"id": job["id"], "status": "skipped", "reason": reason[:300], "split": job.get("split")}
