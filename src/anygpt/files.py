"""Writing files safely: whole files atomically, log lines whole, paths from data kept inside
their folder, and output locations checked before any work starts.

    with atomic_path(out / "report.json") as tmp:   # write tmp; renamed onto the name on success
        tmp.write_text(...)
    write_json(out / "meta.json", meta)             # the same in one call
    append_jsonl(out / "done.jsonl", entry)         # a line cut by a kill never swallows the next
    wav = safe_join(workdir, f"{item_id}.wav")      # an id like '../../x' is refused
    check_output_dir(args.out)                      # a file there, or a read-only place: fail now

Temporary files are named `.NAME.anygpt-tmp-XXXXXXXX.EXT` beside their target, so a cleanup
after a kill (`remove_stale_temps`) removes ours and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from anygpt.errors import OutputError, UnsafePathError

TEMP_TAG = ".anygpt-tmp-"
_TEMP_NAME = re.compile(r"^\..+" + re.escape(TEMP_TAG) + r"[A-Za-z0-9_]+(\.[^/]*)?$")


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds
    (an error or a kill leaves the old file, or none, and no temporary file on error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_TAG}", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_temp_file(path: Path) -> bool:
    """True for a temporary file of `atomic_path` (left behind only by a killed process)."""
    return bool(_TEMP_NAME.match(path.name))


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files of `atomic_path` under folder (a killed run's); returns how many.
    Other files, hidden or not, are never touched."""
    n = 0
    for p in Path(folder).rglob(f"*{TEMP_TAG}*"):
        if p.is_file() and is_temp_file(p):
            p.unlink(missing_ok=True)
            n += 1
    return n


def write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) to path atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """Write obj as JSON (UTF-8, non-ASCII kept) atomically, with a final newline."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict], *, sort_keys: bool = False) -> int:
    """Write records as JSONL atomically; returns the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=sort_keys) + "\n")
            n += 1
    return n


def append_jsonl(path: str | Path, record: dict, *, sort_keys: bool = False, sync: bool = False) -> None:
    """Append one JSON line. If a killed run left the file's last line unfinished, the new record
    starts on a line of its own (so a reader skips only the cut line, never this one)."""
    line = json.dumps(record, ensure_ascii=False, sort_keys=sort_keys) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        if sync:
            os.fsync(f.fileno())


def safe_join(root: str | Path, relative: str | Path, *, what: str = "path") -> Path:
    """root / relative for a `relative` path that comes from data (a manifest id, a config
    entry): UnsafePathError if it is absolute, has a '..' part or leads outside root through a
    link. `what` names the field in the message."""
    root = Path(root)
    rel = Path(relative)
    text = str(relative)
    if not text or text.strip() != text or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r}: not a usable file name")
    if rel.is_absolute() or rel.drive:
        raise UnsafePathError(f"{what} {text!r}: an absolute path; it must be relative to {root}")
    if ".." in rel.parts:
        raise UnsafePathError(f"{what} {text!r}: leads out of {root} ('..'); it must stay inside it")
    joined = root / rel
    real_root = root.resolve()
    if not joined.resolve().is_relative_to(real_root):
        raise UnsafePathError(f"{what} {text!r}: leads out of {root} through a link")
    return joined


def check_output_dir(path: str | Path, *, flag: str = "--out") -> Path:
    """Check that `path` is a folder we can write into, or can be made one; creates nothing.
    Called before any work, so that a bad output location fails in a second, not after an hour."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: {flag} is a file; it must be a folder (give a new or existing folder)")
    _check_writable(path, flag)
    return path


def check_output_file(path: str | Path, *, flag: str = "--out-file") -> Path:
    """Check that a file can be written at `path` (its folder may still have to be made)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: {flag} is a folder; it must be a file name (e.g. {path / 'report.json'})")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: {flag} cannot be written (no permission); choose another file")
    _check_writable(path.parent, flag)
    return path


def _check_writable(folder: Path, flag: str) -> None:
    """The folder, or the nearest part of it that exists, must be a folder we may write into."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{folder}: {flag} cannot be made there: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: {flag} cannot be written ({existing} is read-only); choose another place")
