"""Writing files safely: whole files atomically, log lines whole, paths from data kept inside
their folder, and output locations checked before any work starts.

    with atomic_path(out / "report.json") as tmp:   # write tmp; renamed onto the name on success
        tmp.write_text(...)
    write_json(out / "meta.json", meta)             # the same in one call
    append_jsonl(out / "done.jsonl", entry)         # a line cut by a kill never swallows the next
    wav = safe_join(workdir, f"{item_id}.wav")      # an id like '../../x' is refused
    check_output_dir(args.out)                      # a file there, or a read-only place: fail now
    with atomic_folder(export, "model", flag="--export") as tmp:   # a whole folder, swapped in
        ...

An output folder is ours only if it is new, empty, or carries our marker (`.anygpt-output`, a
JSON object naming its kind: "model", "blocks", "checkpoint"). `claim_output_dir` refuses any
other folder, and an output equal to, inside or around one of the command's inputs, so that no
command ever replaces or deletes a file it did not write.

Temporary files are named `.NAME.anygpt-tmp-XXXXXXXX.EXT` beside their target, so a cleanup
after a kill (`remove_stale_temps`) removes ours and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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


# ---------------------------------------------------------------- output folders that are ours
MARKER = ".anygpt-output"


def output_kind(folder: str | Path) -> str | None:
    """The kind our marker gives `folder` ("model", "blocks", ...), or None without a marker."""
    try:
        kind = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def mark_output_dir(folder: str | Path, kind: str) -> None:
    """Record that `folder` holds our output of `kind` (a later run may replace it)."""
    write_json(Path(folder) / MARKER, {"kind": kind, "written_by": "anygpt"})


def claim_output_dir(path: str | Path, kind: str, *, flag: str = "--out",
                     inputs: dict[str, str | Path | None] | None = None) -> Path:
    """Check, before any work, that `path` may receive our output of `kind`: it is new, empty, or
    carries our marker of that kind (OutputError otherwise, naming a few of the files in it), and
    it is neither equal to, inside nor around one of `inputs` (flag -> path). Creates nothing."""
    path = Path(path)
    check_output_dir(path, flag=flag)
    check_apart(path, inputs or {}, flag=flag)
    if path.is_dir():
        theirs = sorted(p.name for p in path.iterdir() if not is_temp_file(p) and p.name != MARKER)
        found = output_kind(path)
        if theirs and found != kind:
            shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
            what = f"our {found} folder, not a {kind} folder" if found else f"files anygpt did not write ({shown})"
            raise OutputError(f"{path}: {flag} holds {what}; choose a new or empty folder (nothing was changed)")
    return path


def check_apart(output: str | Path, inputs: dict[str, str | Path | None], *, flag: str = "--out") -> None:
    """OutputError if `output` is the same place as an input, inside one, or holds one."""
    out = Path(output).resolve()
    for name, given in inputs.items():
        if given is None:
            continue
        src = Path(given).resolve()
        if out == src:
            how = "is the same place as"
        elif out.is_relative_to(src):
            how = "is inside"
        elif src.is_relative_to(out):
            how = "holds"
        else:
            continue
        raise OutputError(f"{output}: {flag} {how} {name} {given}; an output must be apart from the inputs")


@contextmanager
def atomic_folder(folder: str | Path, kind: str, *, flag: str = "--out", keep: tuple[str, ...] = ("*.md",),
                  inputs: dict[str, str | Path | None] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `folder`; on success mark it as our `kind`, copy
    into it the files of the folder it replaces that match `keep` (a README) and that the block
    did not write, and swap it into place (the old folder is removed only after the rename). The
    folder must be ours to replace (claim_output_dir) and is checked before and after the block.
    On error the temporary folder is removed and `folder` is left as it was."""
    folder = Path(folder)
    claim_output_dir(folder, kind, flag=flag, inputs=inputs)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}{TEMP_TAG}"))
    try:
        yield tmp
        claim_output_dir(folder, kind, flag=flag, inputs=inputs)  # nobody put files there meanwhile
        mark_output_dir(tmp, kind)
        if folder.is_dir():
            for old in folder.iterdir():
                if old.is_file() and any(old.match(k) for k in keep) and not (tmp / old.name).exists():
                    shutil.copy2(old, tmp / old.name)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes the folder private; give it the usual mode
        trash = folder.parent / f".{folder.name}{TEMP_TAG}old{os.getpid()}"
        if folder.exists():
            os.replace(folder, trash)
        os.replace(tmp, folder)
        shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
