"""A model name or folder -> AnyGPT: the top of the house, which nothing else in anygpt imports
but the commands that load a model (chat, serve, eval).

    from anygpt.loaders import load_model
    model = load_model("anygpt-tiny")          # the shipped default, no download
    model = load_model("random-64x2")          # random weights: tests and trying the pipeline
    model = load_model("random-64x2-media")    # the same LM in the shipped tokenizers' layout, with them
    model = load_model("path/to/AnyGPT-chat")  # a released folder, or one of ours

A folder's parts (LM, text tokenizer, modality tokenizers, template) are resolved once by
anygpt.model_parts.ModelParts. The shipped folders and their retrain commands are in
anygpt.asset_paths; the compact tokenizers' loaders sit beside the tokenizers in
anygpt.modalities; base LMs for fine-tuning load with anygpt.lm.base_lm.
"""

from __future__ import annotations

from pathlib import Path

from anygpt.asset_paths import DEFAULT_MODEL, MODEL_FOLDERS, shipped_model_folder
from anygpt.errors import CheckpointError

# random LMs built in memory (anygpt.lm.tiny.random_tiny: 64 wide, 2 layers, 4 heads)
RANDOM_MODELS = ("random-64x2", "random-64x2-media")
MODEL_NAMES = (*MODEL_FOLDERS, *RANDOM_MODELS)

__all__ = ["DEFAULT_MODEL", "MODEL_NAMES", "load_model", "random_media_model", "resolve_model_path"]


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name -> its folder; anything else is taken as a folder path.
    A shipped folder that is missing its weights is an error, never a silent fallback."""
    folder = shipped_model_folder(str(name_or_path))
    if folder is not None:
        return folder
    path = Path(name_or_path)
    if not path.exists():
        raise CheckpointError(f"{path}: model folder not found; give a folder or one of {', '.join(MODEL_NAMES)}")
    return path


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, template: str | None = None, **kwargs):
    """-> AnyGPT for a model name (`anygpt-tiny`, `random-64x2`, `random-64x2-media`) or a model
    folder (kwargs: those of AnyGPT.from_pretrained)."""
    from anygpt.model import AnyGPT

    if str(name_or_path) == "random-64x2":
        from anygpt.lm.tiny import random_tiny

        lm, tok, layout = random_tiny()
        return AnyGPT(lm, tok, layout, template=template or "MMGPT")
    if str(name_or_path) == "random-64x2-media":
        return random_media_model(template=template)
    return AnyGPT.from_pretrained(resolve_model_path(name_or_path), template=template, **kwargs)


def random_media_model(*, seed: int = 0, template: str | None = None, **llama_kwargs):
    """-> AnyGPT: a random LLaMA (64 wide, 2 layers unless llama_kwargs say otherwise) in the
    layout of the shipped compact tokenizers (image, speech, music), with those tokenizers
    attached, so that whatever it writes comes out as real media. For tests, demos and
    benchmarks of the serving path."""
    from anygpt.lm.tiny import random_tiny
    from anygpt.modalities import load_tokenizer
    from anygpt.model import AnyGPT

    tokenizers = {m: load_tokenizer(m, "compact") for m in ("image", "speech", "music")}
    lm, tok, layout = random_tiny([t.token_spec for t in tokenizers.values()], seed=seed, **llama_kwargs)
    return AnyGPT(lm, tok, layout, tokenizers=tokenizers, template=template or "MMGPT")
