"""Image corpus: emoji (two styles), scikit-learn digits and drawn scenes, with captions.

Sources: the npm package emoji-datasource-google (64x64 PNGs and emoji.json: name,
category, subcategory), the Noto Color Emoji font (Debian fonts-noto-color-emoji, drawn
with Pillow), scikit-learn's load_digits (8x8 handwritten digits) and anygpt.data.scenes.
Every image is saved at the tokenizer's fixed size (preset.size, RGB PNG) under images/,
and its original (source resolution) under originals/.

Splits: emoji by code point (both styles of an emoji share a split), digits and scenes by
item hash (train 90%, val 5%, test 5%); scenes whose objects include a held-out
(shape, colour) pair (scenes.HELDOUT_PAIRS) form heldout_combos and never occur elsewhere.
"""

from __future__ import annotations

import json
import os
import random
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFont

from anygpt.data import scenes
from anygpt.data.corpora.common import (
    JobFailed, MissingDependencyError, SETUP_HINT, ok_entry, sha256_file, skip_entry, sub_rng, unit_hash,
)
from anygpt.data.corpora.presets import ImagePreset
from anygpt.files import atomic_path
from anygpt.errors import MediaError
from anygpt.media_io import read_image, to_rgb

EMOJI_DIR = Path(os.environ.get("ANYGPT_EMOJI_DIR", Path.home() / ".cache/anygpt/npm/node_modules/emoji-datasource-google"))
NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def check_sources(preset: ImagePreset, emoji_dir: Path = EMOJI_DIR) -> None:
    if preset.n_emoji_google and not (emoji_dir / "emoji.json").is_file():
        raise MissingDependencyError(
            f"{emoji_dir / 'emoji.json'} not found: the emoji pictures come from the npm package "
            f"emoji-datasource-google; install them with `{SETUP_HINT}` (or set ANYGPT_EMOJI_DIR).")
    if preset.n_emoji_noto and not NOTO_FONT.is_file():
        raise MissingDependencyError(
            f"{NOTO_FONT} not found: it comes with the Debian package fonts-noto-color-emoji; install it "
            f"with `{SETUP_HINT}` (or `sudo apt-get install fonts-noto-color-emoji`).")


def _split(*keys: object) -> str:
    u = unit_hash("image-split", *keys)
    return "train" if u < 0.9 else "val" if u < 0.95 else "test"


def _take(items: list, n: int, rng: random.Random) -> list:
    if n < 0 or n >= len(items):
        return list(items)
    return rng.sample(items, n)


# ---- plan ----

def plan(preset: ImagePreset, seed: int, emoji_dir: Path = EMOJI_DIR) -> list[dict]:
    """Every image of the corpus as a job dict (deterministic for the seed)."""
    jobs: list[dict] = []
    emoji = []
    if preset.n_emoji_google or preset.n_emoji_noto:
        with open(emoji_dir / "emoji.json", encoding="utf-8") as f:
            emoji = sorted(json.load(f), key=lambda e: e["unified"])
    google = [e for e in emoji if e.get("has_img_google")]
    for e in _take(google, preset.n_emoji_google, sub_rng(seed, "emoji-google")):
        jobs.append({"id": f"emoji-google-{e['unified'].lower()}", "kind": "emoji_google", "split": _split(e["unified"]),
                     "file": str(emoji_dir / "img/google/64" / e["image"]), **_emoji_meta(e)})
    for e in _take(emoji, preset.n_emoji_noto, sub_rng(seed, "emoji-noto")):
        jobs.append({"id": f"emoji-noto-{e['unified'].lower()}", "kind": "emoji_noto", "split": _split(e["unified"]),
                     "unified": e["unified"], **_emoji_meta(e)})
    if preset.n_digits:
        n_digits = len(_digits().target)
        for i in sorted(_take(list(range(n_digits)), preset.n_digits, sub_rng(seed, "digits"))):
            jobs.append({"id": f"digit-{i:04d}", "kind": "digit", "split": _split("digit", i), "index": i})
    for i in range(preset.n_scenes + preset.n_heldout_scenes):
        heldout = i >= preset.n_scenes
        jid = f"scene-{'h' if heldout else 't'}{i:06d}"
        jobs.append({"id": jid, "kind": "scene", "split": "heldout_combos" if heldout else _split("scene", seed, i),
                     "heldout": heldout, "seed": sub_rng(seed, "scene", jid).getrandbits(63)})
    return jobs


def _emoji_meta(e: dict) -> dict:
    name = (e.get("name") or e.get("short_name") or "").lower()
    return {"name": name, "category": e.get("category"), "subcategory": e.get("subcategory"),
            "short_name": e.get("short_name"), "unified": e["unified"]}


# ---- captions ----

def emoji_caption(job: dict, style: str, rng: random.Random) -> str:
    name, cat, sub = job["name"], job["category"], (job["subcategory"] or "").replace("-", " ")
    art = "an" if name[:1] in "aeiou" else "a"
    return rng.choice([
        f"{art.capitalize()} {name} emoji.",
        f"The {name} emoji, from the {cat} category.",
        f"An emoji of {art} {name} ({cat}, {sub}).",
        f"{name.capitalize()}: an emoji in the {style} style, category {cat}.",
        f"A {style}-style emoji showing {name}.",
        f"Emoji, {cat}: {name}.",
    ])


_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_caption(d: int, rng: random.Random) -> str:
    return rng.choice([
        f"A handwritten digit {d}.", f"The number {_DIGIT_WORDS[d]}, written by hand.",
        f"A low-resolution scan of a handwritten {d}.", f"Handwritten {_DIGIT_WORDS[d]} ({d}).",
        f"A blurry grey handwritten digit: {d}.",
    ])


# ---- render ----

def _save_png(im: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG", optimize=False)
    return path


def _emoji_google(job: dict) -> Image.Image:
    path = Path(job["file"])
    if not path.is_file():
        raise JobFailed(f"{path}: picture missing")
    try:
        return read_image(path)
    except MediaError as e:
        raise JobFailed(f"{path}: corrupt picture ({str(e).removeprefix(f'{path}: ')})") from None


def _emoji_noto(job: dict) -> Image.Image:
    text = "".join(chr(int(cp, 16)) for cp in job["unified"].split("-"))
    font = _noto_font()
    im = Image.new("RGBA", (136, 128), (255, 255, 255, 0))
    from PIL import ImageDraw

    ImageDraw.Draw(im).text((0, 0), text, font=font, embedded_color=True)
    bbox = im.getbbox()
    if bbox is None:
        raise JobFailed(f"the Noto font has no glyph for {job['unified']}")
    if len(text) > 1 and (bbox[2] - bbox[0]) > 1.5 * (bbox[3] - bbox[1]):
        raise JobFailed(f"the Noto font draws {job['unified']} as several glyphs")
    return to_rgb(im)


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


@lru_cache(maxsize=1)
def _noto_font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(NOTO_FONT), 109)


def _digit(job: dict) -> tuple[Image.Image, int]:
    d = _digits()
    arr = 255 - (d.images[job["index"]] * (255.0 / 16.0)).round().astype(np.uint8)  # dark ink on white
    return Image.fromarray(arr, "L").convert("RGB"), int(d.target[job["index"]])


def render_batch(jobs: list[dict], corpus_dir: Path, preset: ImagePreset) -> list[dict]:
    """Worker: make, resize and save each job's image; one done-log entry per job."""
    entries = []
    for job in jobs:
        try:
            entries.append(ok_entry(job, _render_one(job, corpus_dir, preset)))
        except (JobFailed, OSError, ValueError) as e:
            entries.append(skip_entry(job, f"{job['kind']} {job['id']}: {e}"))
    return entries


def _render_one(job: dict, corpus_dir: Path, preset: ImagePreset) -> dict:
    rng = sub_rng(0, "caption", job["id"])
    kind = job["kind"]
    resample = Image.LANCZOS
    if kind == "emoji_google":
        original = _emoji_google(job)
        text, attrs = emoji_caption(job, "Google", rng), _emoji_attrs(job, "google")
    elif kind == "emoji_noto":
        original = _emoji_noto(job)
        text, attrs = emoji_caption(job, "Noto", rng), _emoji_attrs(job, "noto")
    elif kind == "digit":
        original, label = _digit(job)
        text, attrs, resample = digit_caption(label, rng), {"source": "sklearn-digits", "digit": label}, Image.BICUBIC
    elif kind == "scene":
        srng = random.Random(job["seed"])
        spec = scenes.sample_scene(srng, heldout=job["heldout"])
        original = scenes.render_scene(spec, preset.scene_original_size)
        text, attrs = scenes.caption(spec, srng), {"source": "scenes", **scenes.attributes(spec)}
        fixed = scenes.render_scene(spec, preset.size)
    else:
        raise JobFailed(f"unknown image kind {kind}")
    if kind != "scene":
        fixed = _fit(original, preset.size, resample)
    rel, rel_orig = Path("images") / kind / f"{job['id']}.png", Path("originals") / kind / f"{job['id']}.png"
    out, out_orig = _save_png(fixed, corpus_dir / rel), _save_png(original, corpus_dir / rel_orig)
    return {
        "id": f"image-{job['id']}", "path": str(rel), "original_path": str(rel_orig), "caption": text,
        "kind": kind, "split": job["split"], "width": preset.size, "height": preset.size,
        "original_size": list(original.size), "attributes": attrs,
        "sha256": sha256_file(out), "bytes": out.stat().st_size, "original_bytes": out_orig.stat().st_size,
    }


def _fit(im: Image.Image, size: int, resample: int) -> Image.Image:
    """Pad to a square on white, then resize to size x size."""
    w, h = im.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        im = canvas
    return im.resize((size, size), resample) if im.size != (size, size) else im


def _emoji_attrs(job: dict, style: str) -> dict:
    return {"source": f"emoji-{style}", "style": style, "name": job["name"], "category": job["category"],
            "subcategory": job["subcategory"], "short_name": job["short_name"],
            "unified": job["unified"], "character": "".join(chr(int(c, 16)) for c in job["unified"].split("-")),
            "unicode_name": _unicode_name(job["unified"])}


def _unicode_name(unified: str) -> str | None:
    cps = unified.split("-")
    if len(cps) != 1:
        return None
    return unicodedata.name(chr(int(cps[0], 16)), None)
