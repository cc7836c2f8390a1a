"""Image abilities of a model in training, scored on fixed held-out scenes (ability curves).

    items = scene_items(40, seed=1)                       # the same scenes every evaluation
    caption_scores(model, items, beams=1)                 # -> summary, per-item rows
    text_to_image_scores(model, items, cfg_scale=3.0)     # -> summary, per-item rows

Captioning: the model captions each scene's image codes (the first image_to_text instruction,
greedy or beam search); anygpt.eval.scene_captions scores the caption: `object_accuracy`
(objects named with the right colour, shape, count and position), per attribute
(background, count, sizes, positions) and `exact`; and, more lenient, which of the scene's
objects have their colour, shape, or colour + shape named anywhere in the caption
(`color_named`, `shape_named`, `kind_named`: the first signs of grounding).
Text-to-image: the model writes the image codes for each scene's canonical caption (the first
text_to_image instruction), greedily, with classifier-free guidance at `cfg_scale`
(anygpt.lm.guidance through AnyGPT.complete; 1: none); the image tokenizer decodes them and the pixel scene checker
(anygpt.eval.scene_checker) reads the picture back: `exact`, per attribute (colour, shape,
size, positions, count, background) and `object_accuracy`.
Every score is a mean over items in [0, 1]; each row keeps what the model wrote.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from anygpt.data import scenes
from anygpt.lm.generation import GenerationSettings
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import instruction_prompt

CAPTION_KEYS = ("object_accuracy", "exact", "background", "count", "sizes", "positions", "color_named",
                "shape_named", "kind_named")
IMAGE_KEYS = ("object_accuracy", "exact", "color", "shape", "size", "positions", "count", "background")


@dataclass(frozen=True)
class SceneItem:
    spec: scenes.SceneSpec
    caption: str  # canonical (scenes.describe)
    attributes: dict


def scene_items(n: int, seed: int = 1, max_objects: int = scenes.MAX_OBJECTS) -> list[SceneItem]:
    """n fixed test scenes (training distribution: no held-out pair) from their own seed."""
    rng = random.Random(f"scene-abilities/{seed}")
    specs = [scenes.sample_scene(rng, heldout=False, max_objects=max_objects) for _ in range(n)]
    return [SceneItem(s, scenes.describe(s), scenes.attributes(s)) for s in specs]


def _means(rows: list[dict], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: sum(float(r[k]) for r in rows) / max(1, len(rows)) for k in keys}


@torch.no_grad()
def caption_scores(model, items: list[SceneItem], *, beams: int = 1, max_new_tokens: int = 80) -> tuple[dict, list[dict]]:
    """-> (mean of each CAPTION_KEYS score, rows {caption, truth, scores})."""
    from anygpt.data.fresh_pairs import encode_scenes
    from anygpt.eval.scene_captions import named_attributes, scene_caption_accuracy

    codes = encode_scenes(model.tokenizers["image"], [it.spec for it in items])
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, num_beams=beams)
    rows = []
    for it, c in zip(items, codes):
        prompt = instruction_prompt("to_text", "image", media=CodesPart("image", c))
        parts = model.complete(prompt, settings=settings, seed=0)
        text = "".join(p.text for p in parts if isinstance(p, TextPart)).strip()
        rows.append({"caption": text, "truth": it.caption, "attributes": it.attributes,
                     **scene_caption_accuracy(text, it.attributes), **named_attributes(text, it.attributes)})
    return _means(rows, CAPTION_KEYS), rows


@torch.no_grad()
def draw_codes(model, text: str, cfg_scale: float = 1.0) -> torch.Tensor:
    """Greedy image codes LongTensor [K, T] for `text` (the first text_to_image instruction),
    guided at cfg_scale against the prompt with the caption dropped (AnyGPT's guided replies)."""
    spec = model.layout["image"].spec
    settings = GenerationSettings(max_new_tokens=spec.frames_per_item * spec.num_codebooks + 1, do_sample=False,
                                  cfg_scale=cfg_scale)
    parts = model.complete(instruction_prompt("from_text", "image", text=text), settings=settings,
                           force_modality="image", seed=0)
    return next(p.codes for p in parts if isinstance(p, CodesPart))


@torch.no_grad()
def text_to_image_scores(model, items: list[SceneItem], *, cfg_scale: float = 1.0) -> tuple[dict, list[dict]]:
    """-> (mean of each IMAGE_KEYS score, rows {caption, codes, read, scores})."""
    from anygpt.eval.scene_checker import check_scene

    tok = model.tokenizers["image"]
    rows = []
    for it in items:
        codes = draw_codes(model, it.caption, cfg_scale)
        image = tok.decode(codes.unsqueeze(0))[0]
        checked = check_scene(image, it.attributes)
        rows.append({"caption": it.caption, "codes": codes.flatten().tolist(), **checked})
    return _means(rows, IMAGE_KEYS), rows
