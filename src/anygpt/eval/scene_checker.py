"""Scene checker: read background, colour, shape, size, position and counts back from pixels.

An instrument independent of the renderer: it imports only the vocabulary of the scene
corpus (anygpt.data.scenes: PALETTE, BACKGROUNDS, SHAPES, SIZES, SIZE_RADIUS, POSITIONS,
GRID) and measures the image.

Method, for an RGB image [H, W, 3] (any size, square or not):
1. background = the vocabulary background nearest to the median of the border pixels;
2. each of the GRID x GRID cells is examined alone (scene objects never leave their cell):
   pixels are labelled with the nearest palette colour; the most frequent object colour
   (if it covers enough of the cell) is the cell's object;
3. a coverage map alpha in [0, 1] of that colour is taken by projecting every pixel on the
   segment background -> colour (undoing anti-aliasing); the half-coverage level set of
   alpha, upsampled bilinearly, is the object's outline;
4. shape from scale-free measures of the coverage map: solidity (area / convex-hull area),
   bounding-box fill and the centroid's vertical offset in the box; size from the area
   expressed as an equivalent radius in cell units (boundary at the geometric mean of the
   SIZE_RADIUS values).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np


@functools.lru_cache(maxsize=1)
def _vocab():
    from anygpt.data import scenes

    return scenes


@dataclass(frozen=True)
class DetectedObject:
    shape: str
    color: str
    size: str
    position: str
    area: float  # soft pixel area
    features: tuple[float, ...] = ()  # (solidity, fill, offset, radius_in_cells)


def _to_hwc_uint8(image) -> np.ndarray:
    """PIL image, path, uint8 [H, W, 3] or float [3, H, W]/[H, W, 3] in [0, 1] -> float [H, W, 3] 0..255."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        from anygpt.media_io import load_image
        image = load_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    try:
        import torch
        if isinstance(image, torch.Tensor):
            image = image.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.transpose(a, (1, 2, 0))
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an RGB image, got shape {a.shape}")
    a = a.astype(np.float64)
    return a * 255.0 if a.max() <= 1.0 + 1e-6 and np.issubdtype(np.asarray(image).dtype, np.floating) else a


def _nearest(pixels: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pixels [..., 3], colours [K, 3] -> (index [...], distance [...])."""
    d = np.linalg.norm(pixels[..., None, :] - colours, axis=-1)
    return d.argmin(-1), d.min(-1)


def _background(img: np.ndarray) -> str:
    v = _vocab()
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    med = np.median(border, axis=0)
    names = list(v.BACKGROUNDS)
    idx, _ = _nearest(med[None], np.array([v.BACKGROUNDS[n] for n in names], dtype=float))
    return names[int(idx[0])]


def _coverage(cell: np.ndarray, colour: np.ndarray, bg: np.ndarray, max_residual: float = 60.0) -> np.ndarray:
    """Soft coverage alpha [h, w] of `colour` over background `bg` (0 where the pixel is neither)."""
    d = colour - bg
    alpha = ((cell - bg) @ d) / (d @ d)
    alpha = np.clip(alpha, 0.0, 1.0)
    resid = np.linalg.norm(cell - (bg + alpha[..., None] * d), axis=-1)
    alpha[resid > max_residual] = 0.0
    return alpha


# cells are upsampled to about this many pixels a side before thresholding (see _outline)
OUTLINE_SIDE = 80


def _zoom(alpha: np.ndarray) -> int:
    return max(1, -(-OUTLINE_SIDE // min(alpha.shape)))


def _outline(alpha: np.ndarray) -> np.ndarray:
    """Half-coverage mask [h * z, w * z] of a coverage map [h, w] (z = _zoom: 4 for the cells of
    a 64 px scene, 1 from 240 px up): alpha is upsampled bilinearly, then thresholded at 0.5, so
    the outline falls between pixel centres.

    Why not threshold the pixels: an edge through a pixel's centre gives that pixel exactly
    0.5 coverage (the centre cell's objects do: their edges sit on half pixels), so a change of
    1/255 flips whole rows of edge pixels in or out of the mask and a square reads as a circle.
    Upsampled, the same change moves the outline by a few hundredths of a pixel."""
    from skimage.transform import resize

    z = _zoom(alpha)
    if z == 1:
        return alpha > 0.5
    return resize(alpha, (alpha.shape[0] * z, alpha.shape[1] * z), order=1, mode="edge", anti_aliasing=False) > 0.5


def _shape_features(alpha: np.ndarray) -> tuple[float, float, float]:
    """(solidity, bbox fill, vertical centroid offset / box height) of a coverage map [h, w],
    measured on its half-coverage outline (_outline): for an anti-aliased or mildly blurred edge
    that level set stays on the true outline, and compression noise stays below it."""
    from skimage.morphology import convex_hull_image

    mask = _outline(alpha)
    if mask.sum() < 3 * _zoom(alpha) ** 2:
        return 1.0, 1.0, 0.0
    hull = convex_hull_image(mask).sum()
    solidity = float(mask.sum() / max(hull, 1))
    ys, xs = np.nonzero(mask)
    height = ys.max() - ys.min() + 1
    width = xs.max() - xs.min() + 1
    fill = float(mask.sum() / (width * height))
    offset = float((ys.mean() - ys.min() + 0.5) / height - 0.5)
    return solidity, fill, offset


def _soft_area(alpha: np.ndarray) -> float:
    """Area in pixels of the half-coverage outline (_outline)."""
    return float(_outline(alpha).sum() / _zoom(alpha) ** 2)


# area of each shape in units of r^2 (r = SIZE_RADIUS * cell), from the corpus' documented geometry
def _area_factor(shape: str) -> float:
    import math

    if shape == "circle":
        return math.pi
    if shape == "square":
        return (2 * 0.85) ** 2
    if shape == "triangle":
        return 3 * math.sqrt(3) / 4 * 1.1**2
    if shape == "star":
        outer = 1.15
        inner = 0.45 * outer
        return 5 * outer * inner * math.sin(math.radians(36))
    return math.pi


def classify_shape(solidity: float, fill: float, offset: float) -> str:
    """Shape name from scale-free measures of the coverage map.

    Ideal values: circle fill pi/4, solidity 1, offset 0; square fill 1; triangle (apex up)
    fill 0.5, offset +1/6; star solidity 0.55, fill 0.38, offset +0.05. On 64 px renders the
    measured ranges are circle fill 0.72-0.88, square 0.96-1, triangle offset 0.12-0.17,
    star offset 0.02-0.08 and solidity 0.58-0.75; thresholds sit between the ranges
    (benchmarks/calibrate_scorers.py).
    """
    if offset > 0.10 and fill < 0.75:
        return "triangle"
    if solidity < 0.82 or fill < 0.55:
        return "star"
    if fill > 0.92:
        return "square"
    return "circle"


def detect_objects(image, *, min_cover: float = 0.02) -> tuple[str, list[DetectedObject]]:
    """Read (background name, objects in reading order) from an image."""
    v = _vocab()
    img = _to_hwc_uint8(image)
    H, W, _ = img.shape
    bg_name = _background(img)
    bg = np.array(v.BACKGROUNDS[bg_name], dtype=float)
    names = list(v.PALETTE)
    pal = np.array([v.PALETTE[n] for n in names], dtype=float)
    allc = np.concatenate([pal, bg[None]])
    objects: list[DetectedObject] = []
    g = v.GRID
    for row in range(g):
        for col in range(g):
            y0, y1 = round(row * H / g), round((row + 1) * H / g)
            x0, x1 = round(col * W / g), round((col + 1) * W / g)
            cell = img[y0:y1, x0:x1]
            label, dist = _nearest(cell, allc)
            obj = (label < len(names)) & (dist < 60)
            if obj.sum() < min_cover * cell.shape[0] * cell.shape[1]:
                continue
            counts = np.bincount(label[obj], minlength=len(names))
            ci = int(counts.argmax())
            alpha = _coverage(cell, pal[ci], bg)
            area = _soft_area(alpha)
            solidity, fill, offset = _shape_features(alpha)
            shape = classify_shape(solidity, fill, offset)
            cell_side = np.sqrt(cell.shape[0] * cell.shape[1])
            radius = float(np.sqrt(area / _area_factor(shape)) / cell_side)
            sizes = sorted(v.SIZES, key=lambda s: v.SIZE_RADIUS[s])
            # boundary between consecutive sizes at the geometric mean of their radii
            size = sizes[0]
            for a, b in zip(sizes, sizes[1:]):
                if radius > np.sqrt(v.SIZE_RADIUS[a] * v.SIZE_RADIUS[b]):
                    size = b
            objects.append(DetectedObject(shape, names[ci], size, v.POSITIONS[row * g + col], area,
                                          (solidity, fill, offset, radius)))
    return bg_name, objects


def read_scene(image) -> dict:
    """Attributes read from pixels, in the same form as anygpt.data.scenes.attributes()."""
    bg, objs = detect_objects(image)
    v = _vocab()
    counts: dict[str, int] = {}
    for o in objs:
        counts[f"{o.color} {o.shape}"] = counts.get(f"{o.color} {o.shape}", 0) + 1
    return {
        "background": bg,
        "n_objects": len(objs),
        "objects": [{"shape": o.shape, "color": o.color, "size": o.size, "position": o.position,
                     "row": v.POSITIONS.index(o.position) // v.GRID, "col": v.POSITIONS.index(o.position) % v.GRID}
                    for o in objs],
        "counts": dict(sorted(counts.items())),
    }


def compare_scene(read: Mapping, truth: Mapping) -> dict:
    """Compare attributes read from an image with the ground truth (scenes.attributes form).

    Returns booleans: background, count (number of objects), counts (per kind), positions (the
    set of occupied cells), and per-object colour/shape/size matched by position, plus
    `exact` (everything right) and `object_accuracy` (fraction of true objects fully right).
    """
    t_objs = {o["position"]: o for o in truth["objects"]}
    r_objs = {o["position"]: o for o in read["objects"]}
    per = {"color": [], "shape": [], "size": []}
    full = []
    for pos, t in t_objs.items():
        r = r_objs.get(pos)
        ok_all = r is not None
        for k in per:
            ok = r is not None and r[k] == t[k]
            per[k].append(ok)
            ok_all &= ok
        full.append(ok_all)
    out = {
        "background": read["background"] == truth["background"],
        "count": read["n_objects"] == truth["n_objects"],
        "counts": dict(read["counts"]) == dict(truth["counts"]),
        "positions": set(t_objs) == set(r_objs),
        **{k: all(v) for k, v in per.items()},
        "object_accuracy": sum(full) / max(len(full), 1),
    }
    out["exact"] = all(out[k] for k in ("background", "count", "counts", "positions", "color", "shape", "size"))
    return out


def check_scene(image, truth: Mapping) -> dict:
    """read_scene(image) compared with ground-truth attributes; see compare_scene."""
    read = read_scene(image)
    return {**compare_scene(read, truth), "read": read}
