"""Statistics of a built corpus folder: counts, hours and sizes per split and modality."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from anygpt.manifest import read_json, read_jsonl

MODALITY = {"speech": "speech", "music": "music", "images": "image", "text": "text"}


def corpus_stats(root: str | Path) -> dict:
    """{corpus: {split: {items, hours, bytes, speakers, pieces}}, 'skipped': ..., 'index': ...}."""
    root = Path(root)
    out: dict = {"corpora": {}}
    for corpus in MODALITY:
        manifest = root / corpus / "manifest.jsonl"
        if not manifest.exists():
            continue
        per: dict[str, dict] = defaultdict(lambda: {"items": 0, "seconds": 0.0, "bytes": 0, "speakers": set(),
                                                     "pieces": set(), "augmented": 0})
        for r in read_jsonl(manifest):
            for split in (r["split"], "all"):
                s = per[split]
                s["items"] += 1
                s["seconds"] += r.get("duration", 0.0)
                s["bytes"] += r.get("bytes", len(r.get("text", "").encode()) + 1) + r.get("original_bytes", 0) \
                    + r.get("bytes_16k", 0)
                if "speaker" in r:
                    s["speakers"].add(r["speaker"])
                    s["augmented"] += bool(r.get("augmented"))
                if "piece_id" in r:
                    s["pieces"].add(r["piece_id"])
        out["corpora"][corpus] = {
            split: {"items": s["items"], "hours": round(s["seconds"] / 3600, 3), "bytes": s["bytes"],
                    "speakers": len(s["speakers"]), "pieces": len(s["pieces"]), "augmented": s["augmented"]}
            for split, s in sorted(per.items(), key=lambda kv: (kv[0] == "all", kv[0]))
        }
    index_path = root / "index.json"
    out["index"] = read_json(index_path, what="corpus index") if index_path.exists() else {}
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_stats(stats: dict) -> str:
    """A plain-text table of corpus_stats(), then skipped items by reason."""
    index = stats.get("index", {})
    lines = [f"preset {index.get('preset', '?')}  seed {index.get('seed', '?')}  "
             f"last run {index.get('build_seconds_last_run', '?')} s  "
             f"all runs {index.get('build_seconds_total', '?')} s"]
    header = f"{'modality':<8} {'split':<18} {'items':>8} {'hours':>8} {'size':>10} {'speakers':>9} {'pieces':>7}"
    lines += [header, "-" * len(header)]
    for corpus, splits in stats["corpora"].items():
        for split, s in splits.items():
            hours = f"{s['hours']:.3f}" if corpus in ("speech", "music") else "-"
            spk = str(s["speakers"]) if corpus == "speech" else "-"
            pcs = str(s["pieces"]) if corpus == "music" else "-"
            lines.append(f"{MODALITY[corpus]:<8} {split:<18} {s['items']:>8} {hours:>8} {_size(s['bytes']):>10} "
                         f"{spk:>9} {pcs:>7}")
    lines.append("")
    lines.append("skipped (logged, not in any manifest):")
    any_skip = False
    for corpus, summary in index.get("corpora", {}).items():
        n = summary.get("skipped", 0)
        extra = f", shortfall {summary['shortfall']}" if summary.get("shortfall") else ""
        lines.append(f"  {corpus:<7} {n} of {summary.get('planned', summary.get('count', 0) + n)} planned{extra}")
        for reason, k in summary.get("skipped_by_reason", {}).items():
            any_skip = True
            lines.append(f"      {k:>6}  {reason}")
        if summary.get("skipped_by_split"):
            lines.append("      by split: " + ", ".join(f"{s} {k}" for s, k in summary["skipped_by_split"].items()))
    if not index.get("corpora"):
        lines.append("  (no index.json: build not run with anygpt data build)")
    elif not any_skip:
        lines.append("  none")
    return "\n".join(lines)
