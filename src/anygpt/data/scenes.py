"""Drawn scenes: coloured shapes on a plain background, with exact captions.

A scene is a background colour and 1..MAX_OBJECTS objects. Each object has a shape
(SHAPES), a colour (PALETTE), a size (SIZES) and a position: one cell of a 3x3 grid
(POSITIONS), at most one object per cell, so objects never overlap. Captions are exact
by construction: every object is named with its shape, colour, size and position, plus
the background; identical objects are grouped and counted ("two small red circles ...").

Held-out attribute combinations: the (shape, colour) pairs in HELDOUT_PAIRS never occur in
training scenes (`sample_scene(rng, heldout=False)`); held-out scenes contain at least one
of them (`heldout=True`). Each shape and each colour still occurs in training with other
partners, so a model that composes attributes can render and caption the held-out pairs.

Everything here is deterministic for a given `random.Random`, and the names below are a
stable interface (the pixel-reading scene checker in anygpt.eval depends on them):

    PALETTE, BACKGROUNDS, SHAPES, SIZES, POSITIONS, GRID, MAX_OBJECTS, HELDOUT_PAIRS
    SceneObject, SceneSpec, sample_scene, render_scene, caption, describe, attributes,
    is_heldout, object_center, object_radius, object_bbox, spec_from_attributes

Geometry (image of side `size` pixels, cell side c = size / 3): the object in grid cell
(row, col) is centred at ((col + 0.5) * c, (row + 0.5) * c) in (x, y) pixels; its
"radius" r = SIZE_RADIUS[size_name] * c. A circle has radius r; a square has half-side
0.85 r; a triangle points up, vertices on a circle of radius 1.1 r about the centre; a
star has 5 points, outer radius 1.15 r, inner radius 0.45 of that. All fit in the cell.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

from PIL import Image, ImageDraw

# Object colours, chosen far apart in RGB and from every background colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 80, 230),
    "yellow": (245, 215, 20),
    "purple": (150, 50, 190),
    "orange": (250, 130, 10),
}
# Background colours (neutral, distinct from every object colour).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SIZES: tuple[str, ...] = ("small", "large")
# Radius of an object as a fraction of the grid cell side.
SIZE_RADIUS: dict[str, float] = {"small": 0.24, "large": 0.40}
GRID = 3
# Grid cells in reading order; POSITIONS[row * 3 + col].
POSITIONS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "center", "right",
    "bottom-left", "bottom", "bottom-right",
)
MAX_OBJECTS = 4
# (shape, colour) pairs that never appear in training scenes: one per shape, one per colour.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("circle", "purple"),
    ("square", "orange"),
    ("triangle", "blue"),
    ("star", "green"),
})


@dataclass(frozen=True)
class SceneObject:
    """One shape in one grid cell. All fields are names from the constants above."""

    shape: str
    color: str
    size: str
    position: str

    @property
    def row(self) -> int:
        return POSITIONS.index(self.position) // GRID

    @property
    def col(self) -> int:
        return POSITIONS.index(self.position) % GRID

    @property
    def kind(self) -> str:
        """'<colour> <shape>', e.g. 'red circle' (what counts per kind are keyed by)."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class SceneSpec:
    """A background colour name and objects sorted by grid position (reading order)."""

    background: str
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; choose from {list(BACKGROUNDS)}")
        cells = [o.position for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a grid cell: {cells}")
        for o in self.objects:
            if o.shape not in SHAPES or o.color not in PALETTE or o.size not in SIZES or o.position not in POSITIONS:
                raise ValueError(f"object with unknown attribute: {o}")

    @property
    def counts(self) -> dict[str, int]:
        """Objects per kind ('red circle' -> 2), keys sorted."""
        out: dict[str, int] = {}
        for o in self.objects:
            out[o.kind] = out.get(o.kind, 0) + 1
        return dict(sorted(out.items()))


def _draw_pairs(heldout: bool | None) -> list[tuple[str, str]]:
    pairs = [(s, c) for s in SHAPES for c in PALETTE]
    if heldout is False:
        pairs = [p for p in pairs if p not in HELDOUT_PAIRS]
    return pairs


def sample_scene(rng: random.Random, heldout: bool | None = None,
                 max_objects: int = MAX_OBJECTS) -> SceneSpec:
    """Draw a random scene with 1..max_objects objects in distinct grid cells.

    heldout=False: no object uses a pair from HELDOUT_PAIRS (training scenes).
    heldout=True: at least one object does (held-out combination scenes).
    heldout=None: no constraint.
    Objects of the same kind are favoured a little (a repeat kind 30% of the time), so
    counts above one are common.
    """
    n = rng.randint(1, max_objects)
    cells = sorted(rng.sample(range(GRID * GRID), n))
    pairs = _draw_pairs(heldout)
    forced = rng.randrange(n) if heldout else -1
    objects = []
    for i, cell in enumerate(cells):
        if i == forced:
            shape, color = rng.choice(sorted(HELDOUT_PAIRS))
        elif objects and rng.random() < 0.3:
            prev = rng.choice(objects)
            shape, color = prev.shape, prev.color
        else:
            shape, color = rng.choice(pairs)
        objects.append(SceneObject(shape, color, rng.choice(SIZES), POSITIONS[cell]))
    return SceneSpec(rng.choice(list(BACKGROUNDS)), tuple(objects))


def is_heldout(spec: SceneSpec) -> bool:
    """True if any object's (shape, colour) pair is in HELDOUT_PAIRS."""
    return any((o.shape, o.color) in HELDOUT_PAIRS for o in spec.objects)


# ---- geometry and rendering ----

def object_center(obj: SceneObject, size: int) -> tuple[float, float]:
    """(x, y) pixel centre of obj in an image of side `size`."""
    cell = size / GRID
    return ((obj.col + 0.5) * cell, (obj.row + 0.5) * cell)


def object_radius(obj: SceneObject, size: int) -> float:
    """The object's radius r in pixels (see the module docstring for each shape's extent)."""
    return SIZE_RADIUS[obj.size] * size / GRID


def object_bbox(obj: SceneObject, size: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) pixel box that contains obj (its drawn extent, unclipped)."""
    pts = _outline(obj, size)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return (min(xs), min(ys), max(xs), max(ys))


def _regular_points(cx: float, cy: float, radius: float, n: int, start_deg: float) -> list[tuple[float, float]]:
    return [(cx + radius * math.cos(math.radians(start_deg + 360 * k / n)),
             cy + radius * math.sin(math.radians(start_deg + 360 * k / n))) for k in range(n)]


def _outline(obj: SceneObject, size: int) -> list[tuple[float, float]]:
    """Polygon outline of obj in pixels (circles as a 64-gon, for extents only)."""
    cx, cy = object_center(obj, size)
    r = object_radius(obj, size)
    if obj.shape == "circle":
        return _regular_points(cx, cy, r, 64, 0)
    if obj.shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if obj.shape == "triangle":
        return _regular_points(cx, cy + 0.15 * r, 1.1 * r, 3, -90)
    if obj.shape == "star":
        outer, inner = 1.15 * r, 0.45 * 1.15 * r
        pts = []
        for k in range(10):
            rad = outer if k % 2 == 0 else inner
            a = math.radians(-90 + 36 * k)
            pts.append((cx + rad * math.cos(a), cy + 0.08 * r + rad * math.sin(a)))
        return pts
    raise ValueError(f"unknown shape {obj.shape!r}")


def render_scene(spec: SceneSpec, size: int = 64, supersample: int = 4) -> Image.Image:
    """Draw spec as an RGB image of size x size pixels.

    Drawn at size * supersample and reduced by box averaging, so edges are anti-aliased
    while object interiors keep their exact PALETTE colour.
    """
    big = size * supersample
    im = Image.new("RGB", (big, big), BACKGROUNDS[spec.background])
    draw = ImageDraw.Draw(im)
    for obj in spec.objects:
        fill = PALETTE[obj.color]
        if obj.shape == "circle":
            cx, cy = object_center(obj, big)
            r = object_radius(obj, big)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon(_outline(obj, big), fill=fill)
    return im.reduce(supersample) if supersample > 1 else im


# ---- captions ----

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SIZE_WORDS = {"small": ("small", "little", "small"), "large": ("large", "big", "large")}
_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top-left": ("at the top left", "in the top left corner", "in the upper left corner"),
    "top": ("at the top", "at the top centre", "in the middle of the top row"),
    "top-right": ("at the top right", "in the top right corner", "in the upper right corner"),
    "left": ("on the left", "at the middle left", "on the left side"),
    "center": ("in the center", "in the middle", "at the centre"),
    "right": ("on the right", "at the middle right", "on the right side"),
    "bottom-left": ("at the bottom left", "in the bottom left corner", "in the lower left corner"),
    "bottom": ("at the bottom", "at the bottom centre", "in the middle of the bottom row"),
    "bottom-right": ("at the bottom right", "in the bottom right corner", "in the lower right corner"),
}
_SCENE_TEMPLATES = (
    "{items} on a {bg} background.",
    "A {bg} background with {items}.",
    "There {be} {n} {shape_word} on a {bg} background: {items}.",
    "This picture shows {items}, against a {bg} background.",
    "On a plain {bg} background: {items}.",
    "An image of {items} on a {bg} background.",
    "A drawing with a {bg} background and {items}.",
    "{N} {shape_word} on {bg}: {items}.",
)


def _plural(shape: str) -> str:
    return shape + "es" if shape.endswith("s") else shape + "s"


def _join(parts: list[str], rng: random.Random) -> str:
    if len(parts) == 1:
        return parts[0]
    last_sep = rng.choice((" and ", ", and ")) if len(parts) > 2 else " and "
    return ", ".join(parts[:-1]) + last_sep + parts[-1]


def _group_phrase(group: list[SceneObject], style: int, rng: random.Random) -> str:
    """Phrase for identical objects (same shape, colour, size) in one or more cells."""
    o = group[0]
    size_word = _SIZE_WORDS[o.size][style % 3]
    where = [rng.choice(_POSITION_PHRASES[g.position]) for g in group]
    if len(group) == 1:
        noun = f"{o.color} {o.shape} ({o.size})" if style == 2 else f"{size_word} {o.color} {o.shape}"
        article = "an" if noun[0] in "aeiou" else "a"
        return f"{article} {noun} {where[0]}"
    count = _NUMBERS[len(group)]
    noun = f"{size_word} {o.color} {_plural(o.shape)}"
    if style == 1:
        return f"{count} {noun}, " + _join(["one " + w for w in where], rng)
    return f"{count} {noun} " + _join(where, rng)


def caption(spec: SceneSpec, rng: random.Random) -> str:
    """An exact caption of spec in a randomly chosen phrasing (deterministic given rng).

    Every object is named with its colour, shape, size and position and the background is
    named; identical objects are grouped with their count. Object order is reading order or
    grouped by kind, also chosen by rng.
    """
    groups: dict[tuple[str, str, str], list[SceneObject]] = {}
    for o in spec.objects:
        groups.setdefault((o.size, o.color, o.shape), []).append(o)
    ordered = list(groups.values())
    if rng.random() < 0.5:
        rng.shuffle(ordered)
    style = rng.randrange(3)
    items = _join([_group_phrase(g, style, rng) for g in ordered], rng)
    n = len(spec.objects)
    template = rng.choice(_SCENE_TEMPLATES)
    text = template.format(
        items=items, bg=spec.background, n=_NUMBERS[n], N=_NUMBERS[n].capitalize(),
        be="is" if n == 1 else "are", shape_word="shape" if n == 1 else "shapes",
    )
    return text[0].upper() + text[1:]


def describe(spec: SceneSpec) -> str:
    """The canonical caption (fixed phrasing, reading order): caption with a fixed seed 0."""
    return caption(spec, random.Random(0))


# ---- attributes ----

def attributes(spec: SceneSpec) -> dict:
    """JSON-able description of spec.

    {"background": "white", "n_objects": 2,
     "objects": [{"shape", "color", "size", "position", "row", "col"}, ...],
     "counts": {"red circle": 2, ...},           # per '<colour> <shape>' kind
     "pairs": ["circle/red", ...],               # sorted distinct (shape, colour) pairs
     "heldout_pair": bool}                      # any pair in HELDOUT_PAIRS
    """
    return {
        "background": spec.background,
        "n_objects": len(spec.objects),
        "objects": [{**asdict(o), "row": o.row, "col": o.col} for o in spec.objects],
        "counts": spec.counts,
        "pairs": sorted({f"{o.shape}/{o.color}" for o in spec.objects}),
        "heldout_pair": is_heldout(spec),
    }


def spec_from_attributes(attrs: dict) -> SceneSpec:
    """Inverse of attributes(): rebuild the SceneSpec from its JSON dict."""
    objs = tuple(SceneObject(o["shape"], o["color"], o["size"], o["position"]) for o in attrs["objects"])
    return SceneSpec(attrs["background"], objs)
