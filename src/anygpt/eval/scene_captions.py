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


def _object_pattern():
    v = _vocab()
    colours = "|".join(map(re.escape, v.PALETTE))
    shapes = "|".join(map(re.escape, v.SHAPES))
    sizes = "|".join(_SIZE_WORDS)
    nums = "|".join(_NUMBER)
    return re.compile(rf"(?:\b({nums})\s+)?(?:({sizes})\s+)?({colours})\s+({shapes})(?:e?s)?\b(?:\s*\(({sizes})\))?")


def _normalise(text: str) -> str:
    return text.lower().replace("grey", "gray").replace("colour", "color")


def _positions(text: str) -> list[str]:
    """Position names in a piece of text, in order of the patterns (longest first)."""
    found, rest = [], text
    for name, pat in _POSITION_PATTERNS:
        found += [name] * len(re.findall(pat, rest))
        rest = re.sub(pat, " ", rest)
    return found


def parse_scene_objects(text: str) -> list[dict]:
    """Caption -> one entry per object mention: {"kind": "red circle", "count": 2,
    "positions": [...]}, the positions being those named between this mention and the next."""
    low = _normalise(text)
    mentions = list(_object_pattern().finditer(low))
    out = []
    for i, m in enumerate(mentions):
        end = mentions[i + 1].start() if i + 1 < len(mentions) else len(low)
        out.append({"kind": f"{m.group(3)} {m.group(4)}", "count": _NUMBER.get(m.group(1) or "a", 1),
                    "positions": _positions(low[m.end():end])})
    return out


def scene_object_accuracy(caption: str, attrs: Mapping) -> float:
    """The fraction of the scene's objects whose colour, shape, count and position the caption
    names correctly: an object counts if the caption gives its kind (colour + shape) the right
    number of objects and names its position among that kind's positions."""
    mentions = parse_scene_objects(caption)
    named: dict[str, tuple[int, list[str]]] = {}
    for m in mentions:
        n, pos = named.get(m["kind"], (0, []))
        named[m["kind"]] = (n + m["count"], pos + m["positions"])
    right = 0
    for kind, count in attrs["counts"].items():
        n, pos = named.get(kind, (0, []))
        if n != count:
            continue
        free = list(pos)
        for o in (o for o in attrs["objects"] if f"{o['color']} {o['shape']}" == kind):
            if o["position"] in free:
                free.remove(o["position"])
                right += 1
    return right / max(1, len(attrs["objects"]))


def parse_scene_caption(text: str) -> dict:
    """Caption -> {"background": str|None, "n_objects": int, "counts": {"red circle": 2},
    "sized_counts": {"small red circle": 2}, "positions": sorted list of position names}."""
    v = _vocab()
    low = _normalise(text)
    obj = _object_pattern()
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
    positions = _positions(low)
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
    out["object_accuracy"] = scene_object_accuracy(caption, attrs)
    return out


def named_attributes(caption: str, attrs: dict) -> dict[str, float]:
    """The share of the scene's objects whose colour, shape and kind (colour + shape) the
    caption names for some object (extra objects in the caption are not counted against it)."""
    kinds = {m["kind"] for m in parse_scene_objects(caption)}
    colours, shapes = {k.split()[0] for k in kinds}, {k.split()[1] for k in kinds}
    objs = attrs["objects"]
    n = max(1, len(objs))
    return {"color_named": sum(o["color"] in colours for o in objs) / n,
            "shape_named": sum(o["shape"] in shapes for o in objs) / n,
            "kind_named": sum(f"{o['color']} {o['shape']}" in kinds for o in objs) / n}
