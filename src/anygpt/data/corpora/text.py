"""Text corpus: sentences and short passages from WordNet, GCIDE and fortunes.

Sources (Debian packages): wordnet-base (glosses and quoted example sentences in
/usr/share/wordnet/data.*), dict-gcide (definitions of the 1913 Webster in
/usr/share/dictd/gcide.dict.dz), fortunes (quotations in /usr/share/games/fortunes/*).
Text is cleaned (ASCII, whitespace, markup and citations removed), filtered by length and
deduplicated case-insensitively. Splits are by a hash of the normalised text, so a sentence
always lands in the same split whatever the preset: train 90%, val 5%, test 5%.

Output in DIR/text: manifest.jsonl (one record per item: id, text, kind, source, split,
n_words, sha256 of the text, path = the split file, line = its line in it) and
{split}.txt with one item per line.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from pathlib import Path

from anygpt.data.corpora.common import (
    MissingDependencyError, SETUP_HINT, sha256_text, sub_rng, unit_hash, write_jsonl_atomic,
)
from anygpt.data.corpora.presets import TextPreset
from anygpt.files import atomic_path

WORDNET_DIR = Path("/usr/share/wordnet")
GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Fortune files that are mostly pictures, tables or offensive material are left out.
FORTUNE_SKIP = {"art", "ascii-art", "definitions", "linux", "off", "debian", "computers", "perl"}

SPLIT_BANDS = (("train", 0.90), ("val", 0.95), ("test", 1.0))


def text_split(text: str) -> str:
    """train/val/test of a text, from a hash of its normalised form (stable across presets)."""
    u = unit_hash("text-split", normalise_key(text))
    return next(name for name, upper in SPLIT_BANDS if u < upper)


def normalise_key(text: str) -> str:
    """Dedup key: lowercase letters and digits only."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def clean(text: str) -> str:
    """ASCII-fold, collapse whitespace, straighten quotes; '' if nothing useful remains."""
    text = unicodedata.normalize("NFKD", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.encode("ascii", "ignore").decode()
    text = re.sub(r"\s+", " ", text).strip()
    return text


def _sentence_like(text: str) -> str:
    """Capitalise and end with a full stop if no terminal punctuation."""
    text = text.strip(" ;,:")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?\"'":
        text += "."
    return text


def wordnet_items(limit: int | None = None) -> list[tuple[str, str, str]]:
    """(text, kind, source) for every WordNet gloss and example sentence."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"data.{pos}"
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                gloss = line.split("|", 1)[1]
                parts = [p.strip() for p in gloss.split(";")]
                for p in parts:
                    if p.startswith('"'):
                        ex = p.strip('" ')
                        if ex:
                            out.append((_sentence_like(clean(ex)), "sentence", "wordnet-example"))
                    elif p and not p.startswith("(") and len(p.split()) >= 3:
                        out.append((_sentence_like(clean(p)), "sentence", "wordnet-gloss"))
                if limit and len(out) >= limit:
                    return out
    return out


_GCIDE_DROP = [
    re.compile(r"\[[^\]]*\]"),            # [1913 Webster], [R.], [Obs.]
    re.compile(r"--\s*[A-Z][\w.' ]*\.?"),  # --Bailey. citations
    re.compile(r"^\s*\d+\.\s*"),           # "1. " sense numbers
    re.compile(r"^\s*\([A-Z][\w. ]*\)\s*"),  # (Anat.) domains
    re.compile(r"\{[^}]*\}"),              # {cross references}
]


def gcide_items(limit: int | None = None) -> list[tuple[str, str, str]]:
    """(text, 'sentence', 'gcide') for each definition paragraph of GCIDE."""
    with gzip.open(GCIDE_PATH, "rt", encoding="utf-8", errors="replace") as f:
        raw = f.read(limit * 400) if limit else f.read()
    out = []
    for para in raw.split("\n\n"):
        lines = para.split("\n")
        body = [ln for ln in lines if ln.startswith("   ")]
        if not body or len(body) == len(lines) and "\\" in lines[0]:
            continue
        text = " ".join(ln.strip() for ln in body)
        if "\\" in text or "Syn:" in text or "Note:" in text[:6]:
            continue
        for rx in _GCIDE_DROP:
            text = rx.sub(" ", text)
        text = clean(text)
        if re.search(r"[<>\\|=_*&\[\]]|\s[.,;:]|\bSee\b|\b(pl|pr|p|imp|vb|n)\.\s", text):
            continue  # leftovers of removed markup, grammar notes
        if text.count("(") != text.count(")"):
            continue
        out.append((_sentence_like(text), "sentence", "gcide"))
    return out[:limit] if limit else out


def fortune_items(limit: int | None = None) -> list[tuple[str, str, str]]:
    """(text, 'sentence'|'passage', 'fortunes/<file>') for each prose fortune."""
    out = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.suffix or path.name in FORTUNE_SKIP or not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            chunks = f.read().split("\n%\n")
        for chunk in chunks:
            lines = chunk.strip("\n%").split("\n")
            # Skip verse and drawings: lines deeply indented or full of symbols.
            if any(re.search(r"[|_~^<>{}\\=#@*]", ln) for ln in lines):
                continue
            body = [ln for ln in lines if not ln.strip().startswith("--")]
            text = clean(" ".join(body))
            if not text or re.search(r"\b[A-Z][a-z]*:\s", text):  # dialogues "Q: ... A: ..."
                continue
            n_sent = len(re.findall(r"[.!?](\s|$)", text))
            out.append((text, "passage" if n_sent > 1 else "sentence", f"fortunes/{path.name}"))
        if limit and len(out) >= limit:
            break
    return out


def check_sources() -> None:
    """MissingDependencyError naming the package of any text source that is absent."""
    for path, pkg in ((WORDNET_DIR / "data.noun", "wordnet-base"), (GCIDE_PATH, "dict-gcide"),
                      (FORTUNES_DIR / "fortunes", "fortunes")):
        if not path.exists():
            raise MissingDependencyError(
                f"{path} not found: the text corpus needs the Debian package `{pkg}`; "
                f"install it with `{SETUP_HINT}` (or `sudo apt-get install {pkg}`).")


def collect(preset: TextPreset) -> tuple[list[dict], dict[str, int]]:
    """All usable, deduplicated candidates as records (no split or id yet), and drop counts."""
    lim = preset.max_per_source
    candidates = wordnet_items(lim) + gcide_items(lim) + fortune_items(lim)
    seen: set[str] = set()
    records, dropped = [], {"empty": 0, "too_short": 0, "too_long": 0, "duplicate": 0}
    for text, kind, source in candidates:
        n = len(text.split())
        limit = preset.passage_max_words if kind == "passage" else preset.max_words
        if not text:
            dropped["empty"] += 1
        elif n < preset.min_words:
            dropped["too_short"] += 1
        elif n > limit:
            dropped["too_long"] += 1
        elif (key := normalise_key(text)) in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            records.append({"text": text, "kind": kind, "source": source, "n_words": n})
    return records, dropped


def build_text(out_dir: Path, preset: TextPreset, seed: int, progress: bool = True) -> dict:
    """Write DIR/text (manifest.jsonl and {split}.txt); returns the corpus summary.

    The whole corpus is written in one go (it takes seconds); each output file is atomic and
    manifest.jsonl is written last, so its presence marks the corpus as complete.
    """
    check_sources()
    corpus_dir = out_dir / "text"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    pool, dropped = collect(preset)
    rng = sub_rng(seed, "text-select")
    rng.shuffle(pool)
    chosen = [r for r in pool if r["kind"] == "sentence"][: preset.n_sentences]
    chosen += [r for r in pool if r["kind"] == "passage"][: preset.n_passages]
    chosen.sort(key=lambda r: sha256_text(r["text"]))
    by_split: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for r in chosen:
        split = text_split(r["text"])
        r.update(split=split, sha256=sha256_text(r["text"]), path=f"{split}.txt", line=len(by_split[split]))
        r["id"] = f"text-{r['sha256'][:16]}"
        r["attributes"] = {"kind": r["kind"], "source": r["source"]}
        by_split[split].append(r)
    for split, recs in by_split.items():
        with atomic_path(corpus_dir / f"{split}.txt") as tmp:
            tmp.write_text("".join(r["text"] + "\n" for r in recs), encoding="utf-8")
    records = [r for recs in by_split.values() for r in recs]
    write_jsonl_atomic(corpus_dir / "manifest.jsonl", records)
    return {
        "count": len(records),
        "available": len(pool),
        "dropped_while_cleaning": dropped,
        "shortfall": max(0, preset.n_sentences - sum(r["kind"] == "sentence" for r in records))
        + max(0, preset.n_passages - sum(r["kind"] == "passage" for r in records)),
    }


def speakable(text: str, min_words: int, max_words: int) -> bool:
    """A sentence TTS engines read without surprises: letters and simple punctuation only."""
    n = len(text.split())
    return min_words <= n <= max_words and re.fullmatch(r"[A-Za-z][A-Za-z ,.'?!;:-]*", text) is not None
