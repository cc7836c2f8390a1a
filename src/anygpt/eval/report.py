"""Results of an evaluation: a terminal table and a JSON file written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from anygpt.files import atomic_path


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return str(v)
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    if v is None:
        return "-"
    return str(v)


def format_table(rows: list[Mapping[str, Any]], columns: list[str] | None = None, title: str | None = None) -> str:
    """Plain-text table of rows (dicts); columns default to the keys of the first row."""
    if not rows:
        return (title + "\n" if title else "") + "(no rows)"
    cols = columns or list(rows[0])
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = ([title] if title else []) + [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def render_report(report: Mapping[str, Any]) -> str:
    """The terminal form of a task report: header, summary metrics, then any group tables."""
    head = f"anygpt eval {report['task']}  system={report.get('system')}  source={report.get('source')}  n={report.get('n')}"
    parts = [head, format_table([{"metric": k, "value": v} for k, v in report["summary"].items()])]
    for name, rows in (report.get("groups") or {}).items():
        parts.append(format_table(rows, title=f"\nby {name}"))
    return "\n".join(parts)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return str(x)
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _jsonable(x.item())
    return x


def write_json(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write report as indented JSON to path atomically (inf/nan written as strings)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
