"""Reading sequences written as text (one per line, plain or JSONL with a "text" field), the form
the release's data files use: `[Human]: ... <soim><👀12>...<eoim> ...`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from anygpt.errors import LayoutError
from anygpt.layout import TokenLayout
from anygpt.parts import CodesPart, TextPart


def read_sequences(path: str | Path, layout: TokenLayout, *, strict: bool = True
                   ) -> Iterator[tuple[int, list[TextPart | CodesPart]]]:
    """Yield (line number, parts) for each non-empty line; a malformed line raises LayoutError
    naming the file, the line and the problem (strict), or is repaired (lenient)."""
    path = Path(path)
    if not path.exists():
        raise LayoutError(f"{path}: file not found")
    jsonl = path.suffix == ".jsonl"
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"] if jsonl else line
                yield n, layout.parse_text(text, strict=strict)
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise LayoutError(f"{path}:{n}: not a JSON object with a 'text' field ({e})") from None
            except LayoutError as e:
                raise LayoutError(f"{path}:{n}: {e}") from None
