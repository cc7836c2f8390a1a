"""CLIP and CLAP scores, for users who have those models in a local folder (HF format).

No package here ships CLIP or CLAP weights, so these scores run only when the user points
`--clip-model DIR` / `--clap-model DIR` at a transformers checkpoint folder (for the paper's
numbers: openai/clip-vit-large-patch14 and laion/clap-htsat-unfused). Nothing is downloaded:
models load with local_files_only=True.

CLIP score here is the cosine of the image and text embeddings (the paper reports it on a 0-1
scale, not the x100 / clipped-at-0 variant).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np


@functools.lru_cache(maxsize=2)
def _clip(folder: str):
    from transformers import CLIPModel, CLIPProcessor

    return CLIPModel.from_pretrained(folder, local_files_only=True).eval(), CLIPProcessor.from_pretrained(folder, local_files_only=True)


@functools.lru_cache(maxsize=2)
def _clap(folder: str):
    from transformers import ClapModel, ClapProcessor

    return ClapModel.from_pretrained(folder, local_files_only=True).eval(), ClapProcessor.from_pretrained(folder, local_files_only=True)


def _unit(x) -> np.ndarray:
    x = x.detach().float().numpy()
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def clip_scores(folder: str | Path, image_paths: Sequence[str | Path], captions: Sequence[str]) -> list[float]:
    """Cosine between CLIP embeddings of image i and caption i."""
    import torch

    from anygpt.media_io import read_image

    model, proc = _clip(str(folder))
    out = []
    for p, c in zip(image_paths, captions):
        batch = proc(text=[c], images=[read_image(p)], return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            ie = model.get_image_features(pixel_values=batch["pixel_values"])
            te = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        out.append(float((_unit(ie) * _unit(te)).sum()))
    return out


def clap_scores(folder: str | Path, audio_paths: Sequence[str | Path], captions: Sequence[str]) -> list[float]:
    """Cosine between CLAP embeddings of clip i and caption i (audio at the processor's rate)."""
    import torch

    from anygpt.media_io import load_audio

    model, proc = _clap(str(folder))
    sr = proc.feature_extractor.sampling_rate
    out = []
    for p, c in zip(audio_paths, captions):
        wav = load_audio(p, sr)[0].numpy()
        a = proc(audios=[wav], sampling_rate=sr, return_tensors="pt")
        t = proc(text=[c], return_tensors="pt", padding=True)
        with torch.inference_mode():
            ae = model.get_audio_features(input_features=a["input_features"])
            te = model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        out.append(float((_unit(ae) * _unit(te)).sum()))
    return out
