"""Evaluation items from our corpus manifests or from external benchmarks laid out locally.

Every reader returns a list of EvalItem. Layouts (see docs/eval.md):

- corpus manifest: JSONL, one record per line with id, path (relative to the manifest's
  folder, or to its parent, and inside it: no absolute path, no '..', no link out), text or
  caption (or captions: a list), speaker, duration, attributes, split.
- LibriSpeech test-clean: ROOT/test-clean/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac and
  <spk>-<chapter>.trans.txt ("<utt id> <TRANSCRIPT>" per line). ROOT may be test-clean itself.
- VCTK 0.92: ROOT/wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac and ROOT/txt/pXXX/pXXX_NNN.txt
  (older releases: ROOT/wav48/pXXX/pXXX_NNN.wav).
- COCO Karpathy: ROOT/dataset_coco.json (images[*]: filepath, filename, split, sentences[*].raw,
  cocoid) and the images at ROOT/<filepath>/<filename> (or ROOT/images/...).
- MusicCaps: ROOT/musiccaps-public.csv (ytid, start_s, end_s, aspect_list, caption, ...,
  is_audioset_eval) and ROOT/wav/<ytid>.wav (clips you downloaded; missing ones are skipped).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anygpt.errors import ManifestError
from anygpt.files import safe_join
from anygpt.manifest import file_mismatch, media_path, read_json
from anygpt.manifest import read_manifest as read_manifest_records


class BenchmarkError(ManifestError):
    """A benchmark folder or manifest is missing or not in the documented layout."""


@dataclass
class EvalItem:
    """One evaluation item. path: the media file (audio or image); text: transcript or the
    first caption; captions: all reference captions; attributes: ground-truth metadata."""

    id: str
    path: Path | None = None
    text: str | None = None
    captions: list[str] = field(default_factory=list)
    speaker: str | None = None
    split: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    duration: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the whole manifest record

    def matches(self, key: str, value: str) -> bool:
        """True if the record field (or attribute) `key` equals `value` as text."""
        got = self.meta.get(key, self.attributes.get(key))
        return got is not None and str(got) == value


BENCHMARKS = ("librispeech", "vctk", "coco", "musiccaps")


def _need(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise BenchmarkError(f"{path}: {what} not found; {fix}")
    return path


def read_eval_items(path: str | Path, split: str | None = None, *, check_files: bool = True) -> list[EvalItem]:
    """Items of a corpus JSONL manifest, optionally of one split (comma-separated list allowed).
    With check_files, every item's file must exist and match the manifest's "bytes" and
    "sha256" where it records them (a truncated or replaced file is an error, not a score)."""
    path = Path(path)
    _need(path, "manifest", "pass the manifest .jsonl of a corpus built with `anygpt data build`")
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if len(found) != 1:
            raise BenchmarkError(f"{path}: a folder with {len(found)} .jsonl files; pass the manifest file itself")
        path = found[0]
    want = split.split(",") if split else None
    items = [_manifest_item(r, path, check_files) for r in read_manifest_records(path, splits=want)
             if r.get("status", "ok") == "ok"]
    if not items:
        raise BenchmarkError(f"{path}: no items" + (f" in split {split!r}" if split else "")
                             + "; check the split name (e.g. train, val, test, heldout_speakers)")
    return items


def _manifest_item(r: dict, manifest: Path, check: bool) -> EvalItem:
    path = media_path((manifest.parent, manifest.parent.parent), r, str(manifest)) if r.get("path") else None
    if check and path is not None:
        if not path.is_file():
            raise BenchmarkError(f"{manifest}: item {r['id']!r} names {r['path']!r}, not found at {path}")
        problem = file_mismatch(path, r)
        if problem:
            raise BenchmarkError(f"{manifest}: item {r['id']!r}: {problem}")
    caps = r.get("captions") or ([r["caption"]] if r.get("caption") else [])
    text = r.get("text") if r.get("text") is not None else (caps[0] if caps else None)
    return EvalItem(id=str(r["id"]), path=path, text=text, captions=list(caps), speaker=r.get("speaker"),
                    split=r.get("split"), attributes=dict(r.get("attributes") or {}), duration=r.get("duration"),
                    meta=r)


def read_librispeech(root: str | Path) -> list[EvalItem]:
    """LibriSpeech test-clean (or any LibriSpeech subset folder)."""
    root = Path(root)
    base = root / "test-clean" if (root / "test-clean").is_dir() else root
    _need(base, "LibriSpeech folder", "expected ROOT/test-clean/<spk>/<chapter>/*.flac + *.trans.txt")
    items = []
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            audio = trans.parent / f"{uid}.flac"
            if not audio.exists():
                raise BenchmarkError(f"{trans}: lists {uid} but {audio} is missing")
            items.append(EvalItem(id=uid, path=audio, text=text.strip(), speaker=uid.split("-")[0], split="test-clean"))
    if not items:
        raise BenchmarkError(f"{base}: no */*/*.trans.txt found; expected the LibriSpeech layout <spk>/<chapter>/")
    return items


def read_vctk(root: str | Path) -> list[EvalItem]:
    """VCTK: mic1 FLACs of wav48_silence_trimmed (or wav48 WAVs) with their txt transcripts."""
    root = Path(root)
    txt_root = _need(root / "txt", "VCTK txt folder", "expected ROOT/txt/pXXX/pXXX_NNN.txt")
    items = []
    for txt in sorted(txt_root.glob("*/*.txt")):
        spk, uid = txt.parent.name, txt.stem
        cands = [root / "wav48_silence_trimmed" / spk / f"{uid}_mic1.flac", root / "wav48" / spk / f"{uid}.wav"]
        audio = next((c for c in cands if c.exists()), None)
        if audio is None:
            continue  # VCTK has transcripts without audio (and p315 without transcripts)
        items.append(EvalItem(id=uid, path=audio, text=txt.read_text(encoding="utf-8").strip(), speaker=spk, split="vctk"))
    if not items:
        raise BenchmarkError(f"{root}: no transcript has audio; expected wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac")
    return items


def read_coco_karpathy(root: str | Path, split: str = "test") -> list[EvalItem]:
    """COCO Karpathy split (default test: 5,000 images, 5 captions each)."""
    root = Path(root)
    meta = _need(root / "dataset_coco.json", "Karpathy split file", "download dataset_coco.json into ROOT")
    data = read_json(meta, what="Karpathy split file")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise BenchmarkError(f"{meta}: no \"images\" list; expected the Karpathy dataset_coco.json")
    items = []
    for k, im in enumerate(images):
        where = f"{meta}: images[{k}]"
        if not isinstance(im, dict) or not isinstance(im.get("filename"), str) \
                or not isinstance(im.get("filepath", ""), str):
            raise BenchmarkError(f"{where}: expected an object with filename and filepath strings")
        if im.get("split") != split:
            continue
        rel = [Path(im.get("filepath", "")) / im["filename"], Path("images") / im.get("filepath", "") / im["filename"],
               Path("images") / im["filename"]]
        cands = [safe_join(root, r, what=f"{where}: filename") for r in rel]
        path = next((c for c in cands if c.exists()), None)
        if path is None:
            raise BenchmarkError(f"{meta}: image {im['filename']} not found under {root} (tried {cands[0]})")
        sentences = im.get("sentences", [])
        if not isinstance(sentences, list) or not all(isinstance(x, dict) and isinstance(x.get("raw"), str)
                                                      for x in sentences):
            raise BenchmarkError(f"{where}: sentences must be a list of {{\"raw\": CAPTION}} objects")
        caps = [x["raw"].strip() for x in sentences]
        items.append(EvalItem(id=str(im.get("cocoid", im["filename"])), path=path, text=caps[0] if caps else None,
                              captions=caps, split=split))
    if not items:
        raise BenchmarkError(f"{meta}: no images in split {split!r}")
    return items


def read_musiccaps(root: str | Path, eval_only: bool = False) -> list[EvalItem]:
    """MusicCaps clips present under ROOT/wav/<ytid>.wav (others skipped), with captions."""
    root = Path(root)
    table = _need(root / "musiccaps-public.csv", "MusicCaps table", "download musiccaps-public.csv into ROOT")
    items = []
    with table.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if "ytid" not in row or "caption" not in row:
                raise BenchmarkError(f"{table}: expected columns ytid and caption")
            if eval_only and row.get("is_audioset_eval", "").lower() not in ("true", "1"):
                continue
            wav = root / "wav" / f"{row['ytid']}.wav"
            if not wav.exists():
                continue
            items.append(EvalItem(id=row["ytid"], path=wav, text=row["caption"], captions=[row["caption"]],
                                  split="musiccaps", attributes={"aspects": row.get("aspect_list", "")}))
    if not items:
        raise BenchmarkError(f"{root}: no clip of {table.name} has a file wav/<ytid>.wav")
    return items


def read_benchmark(name: str, root: str | Path, **kw) -> list[EvalItem]:
    """Dispatch on the benchmark name (one of BENCHMARKS)."""
    readers = {"librispeech": read_librispeech, "vctk": read_vctk, "coco": read_coco_karpathy, "musiccaps": read_musiccaps}
    if name not in readers:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return readers[name](root, **kw)
