"""Build all corpora of a preset into one folder, resumably; write DIR/index.json.

    from anygpt.data import build_corpora
    index = build_corpora("tiny", "data/tiny", seed=0)

Layout of DIR: text/, speech/, music/, images/ (each with manifest.jsonl and a hidden
.done.jsonl of finished items), and index.json: preset, seed, per-corpus counts by split,
skipped items by reason and by split, and build seconds. Text is built first: speech reads
its sentences from text/manifest.jsonl.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from anygpt.data.corpora import images, music, speech, text
from anygpt.data.corpora.common import DoneLog, run_jobs, write_jsonl_atomic
from anygpt.data.corpora.presets import CorpusPreset, get_corpus_preset
from anygpt.errors import OutputError, UsageError
from anygpt.files import atomic_path
from anygpt.manifest import read_json

log = logging.getLogger("anygpt.data")
CORPORA = ("text", "speech", "music", "images")


def check_dependencies(preset: CorpusPreset, corpora: tuple[str, ...] = CORPORA, emoji_dir: Path | None = None) -> None:
    """Raise MissingDependencyError (naming the package and the setup command) before any work."""
    if "text" in corpora or "speech" in corpora:
        text.check_sources()
    if "speech" in corpora:
        speech.check_tools(preset.speech)
    if "music" in corpora:
        music.check_tools()
    if "images" in corpora:
        images.check_sources(preset.images, emoji_dir or images.EMOJI_DIR)


def build_corpora(preset: str | CorpusPreset, out: str | Path, seed: int = 0, corpora: tuple[str, ...] = CORPORA,
                  workers: int | None = None, progress: bool = True, emoji_dir: str | Path | None = None) -> dict:
    """Build (or resume building) the corpora of `preset` into `out`; returns the index dict.

    preset: a name from presets.CORPUS_PRESETS or a CorpusPreset. seed: changes which items are drawn
    (same seed, same items). workers: processes for synthesis and rendering (default: all
    cores). emoji_dir: the emoji-datasource-google folder (default: the setup's npm cache).
    """
    p = get_corpus_preset(preset, seed) if isinstance(preset, str) else preset.with_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    emoji = Path(emoji_dir) if emoji_dir else images.EMOJI_DIR
    check_dependencies(p, corpora, emoji)
    unknown = set(corpora) - set(CORPORA)
    if unknown:
        raise UsageError(f"unknown corpora {sorted(unknown)}; choose from {CORPORA}")
    index_path = out / "index.json"
    index = read_json(index_path, what="corpus index") if index_path.exists() else {}
    if index.get("preset") not in (None, p.name) or index.get("seed") not in (None, seed):
        raise OutputError(f"{out}: holds preset {index.get('preset')} seed {index.get('seed')}; "
                         f"build {p.name} seed {seed} into another folder (or delete it)")
    index.update(preset=p.name, seed=seed, config=_config(p))
    index.setdefault("corpora", {})
    t_all = time.time()
    for name in CORPORA:
        if name not in corpora:
            continue
        t0 = time.time()
        if name == "text":
            summary = text.build_text(out, p.text, seed, progress)
        else:
            summary = _build_jobs(name, p, out, seed, workers, progress, emoji)
        summary["seconds"] = round(time.time() - t0, 1)
        index["corpora"][name] = summary
        _write_index(index_path, index)
    index["build_seconds_last_run"] = round(time.time() - t_all, 1)
    index["build_seconds_total"] = round(index.get("build_seconds_total", 0.0) + index["build_seconds_last_run"], 1)
    _write_index(index_path, index)
    return index


def _build_jobs(name: str, p: CorpusPreset, out: Path, seed: int, workers: int, progress: bool, emoji: Path) -> dict:
    corpus_dir = out / name
    if name == "speech":
        text_manifest = out / "text" / "manifest.jsonl"
        if not text_manifest.exists():
            text.build_text(out, p.text, seed, progress)
        jobs = speech.plan(text_manifest, p.speech, seed)
        worker, batch, key = partial(speech.synthesise_batch, sample_rate=p.speech.sample_rate), 24, \
            (lambda j: (j["engine"], j["voice"]))
    elif name == "music":
        jobs = music.plan(p.music, seed)
        worker, batch, key = partial(music.render_batch, preset=p.music), 4, None
    else:
        jobs = images.plan(p.images, seed, emoji)
        worker, batch, key = partial(images.render_batch, preset=p.images), 64, (lambda j: j["kind"])
    done = run_jobs(name, jobs, worker, corpus_dir, workers, batch, key, progress)
    return finalize(corpus_dir, jobs, done)


def finalize(corpus_dir: Path, jobs: list[dict], done: DoneLog) -> dict:
    """Write corpus_dir/manifest.jsonl (finished items in plan order); summary of counts and skips."""
    records, skipped, skipped_by_split = [], Counter(), Counter()
    for job in jobs:
        entry = done.entries.get(job["id"])
        if entry is None:
            skipped["not built (interrupted)"] += 1
            skipped_by_split[job.get("split")] += 1
        elif entry["status"] == "ok":
            records.append(entry["record"])
        else:
            skipped[_reason_class(entry["reason"])] += 1
            skipped_by_split[job.get("split")] += 1
    write_jsonl_atomic(corpus_dir / "manifest.jsonl", records)
    reasons = [done.entries[j["id"]]["reason"] for j in jobs
               if j["id"] in done.entries and done.entries[j["id"]]["status"] != "ok"]
    return {
        "planned": len(jobs), "count": len(records),
        "by_split": dict(sorted(Counter(r["split"] for r in records).items())),
        "skipped": sum(skipped.values()), "skipped_by_reason": dict(skipped.most_common()),
        "skipped_by_split": {str(k): v for k, v in sorted(skipped_by_split.items(), key=str)},
        "skipped_examples": reasons[:5],
    }


def _reason_class(reason: str) -> str:
    """Group skip reasons: 'voice X: ...' -> 'voice X', 'piece P: Err...' -> 'piece: Err'."""
    reason = re.sub(r"\b[0-9A-F]{4,6}(-[0-9A-F]{4,6})*\b", "<code point>", reason)
    head, _, rest = reason.partition(": ")
    if head.startswith("voice "):
        return f"{head}: {rest.split(':')[0][:60]}"
    if head.startswith("piece "):
        return "score failed: " + rest.split(":")[0][:60]
    return head.split(" ")[0] + ": " + rest.split("(")[0].split(":")[-1].strip()[:60]


def _config(p: CorpusPreset) -> dict:
    d = asdict(replace(p))
    d["music"]["instruments"] = {str(k): v for k, v in d["music"]["instruments"].items()}
    return d


def _write_index(path: Path, index: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
