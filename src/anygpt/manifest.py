"""Reading JSON files: corpus manifests (JSONL, one record per item), the logs our jobs append
to, and single JSON files (index.json, meta.json, configs).

    rows = read_manifest("data/tiny/images/manifest.jsonl", splits=["train"])
    for n, entry in iter_jsonl(out / "done.jsonl", lenient=True): ...

Manifests are read strictly: a line that is not a JSON object, or a record without a field the
caller needs, raises ManifestError naming the file and the line. Logs that we append to
(done.jsonl, failed.jsonl, runs.jsonl) are read leniently: a kill can cut their last line,
which is then skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from anygpt.errors import ManifestError

MANIFEST = "manifest.jsonl"


def iter_jsonl(path: str | Path, *, lenient: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-empty line of path. A missing file raises
    ManifestError (strict) or yields nothing (lenient)."""
    path = Path(path)
    if not path.is_file():
        if lenient and not path.exists():
            return
        what = "is a folder" if path.is_dir() else "not found"
        raise ManifestError(f"{path}: {what}; expected a JSONL file (one JSON object per line)")
    with open(path, encoding="utf-8", errors="strict") as f:
        n = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                if lenient:
                    return
                raise ManifestError(f"{path}:{n + 1}: not UTF-8 text ({e.reason}); is this a JSONL file?") from None
            if not line:
                return
            n += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if lenient:
                    continue  # a line cut by a kill
                raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg}); expected one JSON object per line") from None
            if not isinstance(record, dict):
                if lenient:
                    continue
                raise ManifestError(f"{path}:{n}: a JSON {type(record).__name__}, expected an object")
            yield n, record


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """One JSON document; ManifestError naming the file (missing, not UTF-8, not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: {what} {'is a folder' if path.is_dir() else 'not found'}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: {what} is not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno})") from None


def read_jsonl(path: str | Path, *, lenient: bool = False) -> list[dict]:
    """All records of a JSONL file (see iter_jsonl)."""
    return [r for _, r in iter_jsonl(path, lenient=lenient)]


def manifest_path(corpus: str | Path) -> Path:
    """A corpus folder (holding manifest.jsonl) or the manifest file itself -> the manifest file."""
    corpus = Path(corpus)
    return corpus / MANIFEST if corpus.is_dir() else corpus


def read_manifest(path: str | Path, *, splits: Sequence[str] | None = None, require: Iterable[str] = ("id",),
                  part: int = 0, parts: int = 1) -> list[dict]:
    """The records of a corpus manifest (the file, or a folder holding manifest.jsonl).

    splits: keep records whose "split" (default "train") is one of these; None keeps all.
    require: fields every record must have (ManifestError naming file, line and field).
    part/parts: only every parts-th record, from record `part` (one machine's share; counted over
    all non-empty lines, so that the parts of one manifest are disjoint and cover it).
    Ids must be unique."""
    path = manifest_path(path)
    need = tuple(require)
    rows: list[dict] = []
    seen: dict[str, int] = {}
    for k, (n, r) in enumerate(iter_jsonl(path)):
        missing = [f for f in need if f not in r or r[f] in (None, "")]
        if missing:
            raise ManifestError(f"{path}:{n}: the record has no {', '.join(repr(f) for f in missing)} field")
        check_record(r, f"{path}:{n}")
        if "id" in r:
            key = str(r["id"])
            if key in seen:
                raise ManifestError(f"{path}:{n}: id {key!r} again (first on line {seen[key]}); ids must be unique")
            seen[key] = n
        if k % parts != part:
            continue
        if splits is not None and r.get("split", "train") not in splits:
            continue
        rows.append(r)
    return rows


_TEXT_FIELDS = ("path", "text", "caption", "speaker", "split", "status", "kind")


def check_record(r: dict, where: str) -> None:
    """The types and ranges of a manifest record's common fields, where present (ManifestError
    naming `where` and the field): id a string or whole number, path and the text fields
    strings, bytes a whole number >= 0, duration a finite number >= 0, captions a list of
    strings, attributes an object."""
    def bad(field: str, want: str) -> ManifestError:
        return ManifestError(f"{where}: {field} {r[field]!r} is not {want}")

    if "id" in r and (isinstance(r["id"], bool) or not isinstance(r["id"], (str, int))):
        raise bad("id", "a string or a whole number")
    for f in _TEXT_FIELDS:
        if r.get(f) is not None and not isinstance(r[f], str):
            raise bad(f, "a string")
    if "bytes" in r and (isinstance(r["bytes"], bool) or not isinstance(r["bytes"], int) or r["bytes"] < 0):
        raise bad("bytes", "a whole number of bytes")
    d = r.get("duration")
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0):
        raise bad("duration", "a number of seconds")
    caps = r.get("captions")
    if caps is not None and (not isinstance(caps, list) or not all(isinstance(c, str) for c in caps)):
        raise bad("captions", "a list of strings (one per reference caption)")
    if r.get("attributes") is not None and not isinstance(r["attributes"], dict):
        raise bad("attributes", "an object")
    if "sha256" in r and not isinstance(r["sha256"], str):
        raise bad("sha256", "a hex string")


def media_path(roots: Sequence[str | Path], record: dict, where: str) -> Path:
    """The media file of a manifest record: its "path" joined to the first of `roots` where it
    exists (else the first), always inside that root (files.safe_join: no absolute path, no
    '..', no link out; UnsafePathError naming `where`)."""
    from anygpt.files import safe_join

    what = f"{where}: item {record.get('id')!r} path"
    joined = [safe_join(root, record["path"], what=what) for root in roots]
    return next((j for j in joined if j.exists()), joined[0])


def file_mismatch(path: str | Path, record: dict) -> str | None:
    """How the file differs from what its manifest record says ("bytes", "sha256"), or None.
    A truncated or replaced media file is caught here, before it is encoded or scored."""
    path = Path(path)
    size = path.stat().st_size
    if "bytes" in record and size != int(record["bytes"]):
        return (f"{path} has {size} bytes, the manifest says {record['bytes']} (truncated or changed "
                "since the manifest was written; rebuild the corpus or fix the file)")
    if "sha256" in record:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != record["sha256"]:
            return f"{path}: its sha256 differs from the manifest's (changed since the manifest was written)"
    return None
