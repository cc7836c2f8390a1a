"""Reading sequences written as text (one per line, plain or JSONL with a "text" field), the form
the release's data files use: `[Human]: ... <soim><👀12>...<eoim> ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from anygpt.errors import LayoutError, ManifestError
from anygpt.layout import TokenLayout
from anygpt.manifest import iter_jsonl
from anygpt.parts import CodesPart, TextPart


def read_sequences(path: str | Path, layout: TokenLayout, *, strict: bool = True
                   ) -> Iterator[tuple[int, list[TextPart | CodesPart]]]:
    """Yield (line number, parts) for each non-empty line; a malformed line raises LayoutError
    naming the file, the line and the problem (strict), or is repaired (lenient)."""
    path = Path(path)
    if not path.exists():
        raise LayoutError(f"{path}: file not found")
    if path.suffix == ".jsonl":
        try:
            for n, record in iter_jsonl(path):
                if not isinstance(record.get("text"), str):
                    raise LayoutError(f"{path}:{n}: not a JSON object with a 'text' field")
                yield n, _parse(layout, record["text"], strict, f"{path}:{n}")
        except ManifestError as e:
            raise LayoutError(str(e)) from None
        return
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.strip():
                yield n, _parse(layout, line, strict, f"{path}:{n}")


def _parse(layout: TokenLayout, text: str, strict: bool, where: str) -> list[TextPart | CodesPart]:
    try:
        return layout.parse_text(text, strict=strict)
    except LayoutError as e:
        raise LayoutError(f"{where}: {e}") from None
