"""One place that knows where the shipped models live and what a model name means.

    from anygpt.loaders import load_model
    model = load_model("anygpt-tiny")          # the shipped default, no download
    model = load_model("tiny-random")          # random weights: tests and trying the pipeline
    model = load_model("path/to/AnyGPT-chat")  # a released folder, or one of ours

Shipped asset folders (safetensors + config.json, inside the package):
    anygpt-tiny              the trained LM (anygpt.json names its modality tokenizers)
    image-tokenizer-tiny     compact SEED-style image tokenizer (32 codes of 1024 per image)
    speech-tokenizer-tiny    compact speech codec (25 Hz, layer 1 goes to the LM)
    soundstorm-tiny          its acoustic model (voice cloning from a 3 s prompt)
    music-codec-tiny         compact music codec (50 Hz, 4 codebooks of 1024)
"""

from __future__ import annotations

from pathlib import Path

from anygpt.errors import CheckpointError

ASSETS = Path(__file__).resolve().parent / "assets"
ANYGPT_TINY_DIR = ASSETS / "anygpt-tiny"
IMAGE_TOKENIZER_TINY_DIR = ASSETS / "image-tokenizer-tiny"
SPEECH_TOKENIZER_TINY_DIR = ASSETS / "speech-tokenizer-tiny"
SOUNDSTORM_TINY_DIR = ASSETS / "soundstorm-tiny"
MUSIC_CODEC_TINY_DIR = ASSETS / "music-codec-tiny"

DEFAULT_MODEL = "anygpt-tiny"
# name -> shipped folder; "tiny-random" is built in memory (see load_model)
MODEL_FOLDERS: dict[str, Path] = {"anygpt-tiny": ANYGPT_TINY_DIR}
MODEL_NAMES = (*MODEL_FOLDERS, "tiny-random")


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name -> its folder; anything else is taken as a folder path.
    A shipped folder that is missing its weights is an error, never a silent fallback."""
    key = str(name_or_path)
    if key in MODEL_FOLDERS:
        folder = MODEL_FOLDERS[key]
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: the shipped model {key!r} is missing from this installation; "
                                  "reinstall anygpt or retrain it (see its README)")
        return folder
    path = Path(name_or_path)
    if not path.exists():
        raise CheckpointError(f"{path}: model folder not found; give a folder or one of {', '.join(MODEL_NAMES)}")
    return path


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, template: str | None = None, **kwargs):
    """-> AnyGPT for a model name (`anygpt-tiny`, `tiny-random`) or a model folder."""
    from anygpt.model import AnyGPT

    if str(name_or_path) == "tiny-random":
        from anygpt.lm.tiny import random_tiny

        lm, tok, layout = random_tiny()
        return AnyGPT(lm, tok, layout, template=template or "MMGPT")
    return AnyGPT.from_pretrained(resolve_model_path(name_or_path), template=template, **kwargs)
