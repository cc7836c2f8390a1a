"""Read scene attributes from a caption's words: background, objects per kind and size, positions.

The counterpart of scene_checker for text: used to score generated scene captions with exact
attribute accuracy. The vocabulary (colours, shapes, sizes, backgrounds, grid positions) is the
scene corpus's (anygpt.data.scenes); the phrasing rules are general English, not the corpus's
caption templates.
"""

from __future__ import annotations

import re
from typing import Mapping

_NUMBER = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "single": 1, "1": 1, "2": 2, "3": 3, "4": 4}
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
_POSITION_PATTERNS = (  # longest first; matched spans are removed before shorter patterns run
    ("top-left", r"(?:top|upper)[\s-]+left"), ("top-right", r"(?:top|upper)[\s-]+right"),
    ("bottom-left", r"(?:bottom|lower)[\s-]+left"), ("bottom-right", r"(?:bottom|lower)[\s-]+right"),
    ("top", r"middle of the top row|(?:at the )?top (?:centre|center|middle)|\bat the top\b|\bon top\b"),
    ("bottom", r"middle of the bottom row|(?:at the )?bottom (?:centre|center|middle)|\bat the bottom\b"),
    ("left", r"middle left|left side|\bon the left\b|\bat the left\b"),
    ("right", r"middle right|right side|\bon the right\b|\bat the right\b"),
    ("center", r"\bcent(?:er|re)\b|\bmiddle\b"),
)


def _vocab():
    from anygpt.data import scenes

    return scenes


def parse_scene_caption(text: str) -> dict:
    """Caption -> {"background": str|None, "n_objects": int, "counts": {"red circle": 2},
    "sized_counts": {"small red circle": 2}, "positions": sorted list of position names}."""
    v = _vocab()
    low = text.lower().replace("grey", "gray").replace("colour", "color")
    colours = "|".join(map(re.escape, v.PALETTE))
    shapes = "|".join(map(re.escape, v.SHAPES))
    sizes = "|".join(_SIZE_WORDS)
    nums = "|".join(_NUMBER)
    obj = re.compile(rf"(?:\b({nums})\s+)?(?:({sizes})\s+)?({colours})\s+({shapes})(?:e?s)?\b(?:\s*\(({sizes})\))?")
    counts: dict[str, int] = {}
    sized: dict[str, int] = {}
    for m in obj.finditer(low):
        n = _NUMBER.get(m.group(1) or "a", 1)
        size = _SIZE_WORDS.get(m.group(2) or m.group(5) or "", None)
        kind = f"{m.group(3)} {m.group(4)}"
        counts[kind] = counts.get(kind, 0) + n
        skind = f"{size or '?'} {kind}"
        sized[skind] = sized.get(skind, 0) + n
    bgs = "|".join(map(re.escape, v.BACKGROUNDS))
    bg = re.search(rf"\b({bgs})\s+background|background\s+(?:is\s+|of\s+)?({bgs})\b|\bon\s+(?:a\s+)?({bgs})\b", low)
    positions = []
    rest = low
    for name, pat in _POSITION_PATTERNS:
        for m in list(re.finditer(pat, rest)):
            positions.append(name)
        rest = re.sub(pat, " ", rest)
    return {
        "background": next((g for g in bg.groups() if g), None) if bg else None,
        "n_objects": sum(counts.values()),
        "counts": dict(sorted(counts.items())),
        "sized_counts": dict(sorted(sized.items())),
        "positions": sorted(set(positions)),
    }


def truth_from_attributes(attrs: Mapping) -> dict:
    """scenes.attributes() dict -> the form parse_scene_caption returns."""
    sized: dict[str, int] = {}
    for o in attrs["objects"]:
        k = f"{o['size']} {o['color']} {o['shape']}"
        sized[k] = sized.get(k, 0) + 1
    return {"background": attrs["background"], "n_objects": attrs["n_objects"], "counts": dict(sorted(attrs["counts"].items())),
            "sized_counts": dict(sorted(sized.items())), "positions": sorted({o["position"] for o in attrs["objects"]})}


def scene_caption_accuracy(caption: str, attrs: Mapping) -> dict:
    """Booleans per attribute (background, count, counts, sizes, positions) and `exact`."""
    got, want = parse_scene_caption(caption), truth_from_attributes(attrs)
    out = {
        "background": got["background"] == want["background"],
        "count": got["n_objects"] == want["n_objects"],
        "counts": got["counts"] == want["counts"],
        "sizes": got["sized_counts"] == want["sized_counts"],
        "positions": got["positions"] == want["positions"],
    }
    out["exact"] = all(out.values())
    return out
