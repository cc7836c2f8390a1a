"""The shipped asset folders (safetensors + config.json, inside the package) and the command that
retrains each one. A leaf: it imports nothing of anygpt but errors, so the trainers that write
these folders and the loaders that read them can both import it.

Named asset_paths, not assets, because anygpt/assets/ is the data folder holding the weights.

"tiny" is a size: the tiny corpus preset trains the tokenizers shipped here, and the small
corpus preset the LM. A shipped file that is
missing is an error naming the file and the retrain command, never a silent fallback.
"""

from __future__ import annotations

from pathlib import Path

from anygpt.errors import CheckpointError

ASSETS = Path(__file__).resolve().parent / "assets"
WEIGHTS = ("config.json", "model.safetensors")
# each asset's retrain command; the shipped runs' exact commands and times: docs/training.md

# ---------------------------------------------------------------- the LM
ANYGPT_TINY_DIR = ASSETS / "anygpt-tiny"  # the trained LM (anygpt.json names its modality tokenizers)
ANYGPT_TINY_RETRAIN = "anygpt pipeline small --out runs/small --threads 2 --export src/anygpt/assets/anygpt-tiny"
DEFAULT_MODEL = "anygpt-tiny"
# name -> shipped folder; the random models (anygpt.loaders.RANDOM_MODELS) are built in memory
MODEL_FOLDERS: dict[str, Path] = {"anygpt-tiny": ANYGPT_TINY_DIR}

# ---------------------------------------------------------------- image tokenizer "compact"
# 64x64 RGB -> 32 codes of 1024 (one codebook); decoder to pixels. 3.0 MB in float16.
IMAGE_TOKENIZER_TINY_DIR = ASSETS / "image-tokenizer-tiny"
IMAGE_TOKENIZER_RETRAIN = ("anygpt train image-tokenizer --corpus data/tiny --out runs/image-tokenizer "
                           "--export src/anygpt/assets/image-tokenizer-tiny")

# ---------------------------------------------------------------- image tokenizer "grid"
# 64x64 RGB -> 36 local codes of 1024: each code reads its own window of a 6 x 6 grid (2 x 2
# codes on every cell of the drawn scenes). At equal training time the LM learned compact's codes
# better (docs/training.md), so the shipped anygpt-tiny reads and writes compact's.
IMAGE_TOKENIZER_GRID_DIR = ASSETS / "image-tokenizer-grid"
IMAGE_TOKENIZER_GRID_RETRAIN = (
    "anygpt train image-tokenizer --corpus data/tiny --out runs/image-tokenizer-grid "
    "--config '{\"encoder\": \"grid\", \"num_queries\": 36, \"grid_channels\": [32, 64], "
    "\"locality\": [64, 32, 16, 0], \"upsample_channels\": [96, 48, 24], \"refine_channels\": 0}' "
    "--extra-scenes 40000 --steps 1600 --vq-warmup 200 --contrastive-weight 0 --object-weight 10 "
    "--l2-weight 10 --edge-weight 2 --attr-weight 0.5 --fp16 --export src/anygpt/assets/image-tokenizer-grid")

# ---------------------------------------------------------------- speech tokenizer "compact"
# 16 kHz mono, 25 code frames per second, 6 RVQ layers of 512; layer 1 (content, distilled from
# Whisper tiny.en) goes to the LM. Its SoundStorm fills layers 2-6 in the voice of a 3 s prompt
# (the shipped default prompt: 3 s of one training voice).
SPEECH_TOKENIZER_TINY_DIR = ASSETS / "speech-tokenizer-tiny"
SOUNDSTORM_TINY_DIR = ASSETS / "soundstorm-tiny"
SPEECH_TOKENIZER_RETRAIN = ("anygpt train speech-tokenizer --corpus data/tiny --out runs/speech-tokenizer "
                            "--export src/anygpt/assets/speech-tokenizer-tiny")
SOUNDSTORM_RETRAIN = ("anygpt train soundstorm --corpus data/tiny --out runs/soundstorm --steps 6500 "
                      "--export src/anygpt/assets/soundstorm-tiny")

# ---------------------------------------------------------------- speech tokenizer "units"
# As "compact", but layer 1 is voice-free content units (anygpt.nn.content_units: Whisper tiny.en
# features projected so that one sentence in many voices lands on the same units, 256 of them):
# the codes the long run's first 1,160 steps were trained on (docs/training.md). Its own SoundStorm
# fills the acoustic layers.
SPEECH_TOKENIZER_UNITS_DIR = ASSETS / "speech-tokenizer-units"
SOUNDSTORM_UNITS_DIR = ASSETS / "soundstorm-units"
SPEECH_TOKENIZER_UNITS_RETRAIN = (
    "anygpt train speech-tokenizer --corpus data/tiny --out runs/speech-tokenizer-units --layer1 units --units 256 "
    "--init src/anygpt/assets/speech-tokenizer-tiny --steps 2000 --warmup 50 --lr 1e-3 "
    "--export src/anygpt/assets/speech-tokenizer-units")
SOUNDSTORM_UNITS_RETRAIN = (
    "anygpt train soundstorm --corpus data/tiny --codec src/anygpt/assets/speech-tokenizer-units "
    "--init src/anygpt/assets/soundstorm-tiny --out runs/soundstorm-units --steps 2000 --warmup 50 "
    "--export src/anygpt/assets/soundstorm-units")

# ---------------------------------------------------------------- speech tokenizer "phones"
# As "units", but its units are phones read from Whisper tiny.en features (fitted with CTC on the
# text's espeak-ng phonemes: anygpt.nn.content_units, objective "phones"), 55 of them: the speech
# codes of the shipped anygpt-tiny. Its own SoundStorm fills the acoustic layers.
SPEECH_TOKENIZER_PHONES_DIR = ASSETS / "speech-tokenizer-phones"
SOUNDSTORM_PHONES_DIR = ASSETS / "soundstorm-phones"
SPEECH_TOKENIZER_PHONES_RETRAIN = (
    "anygpt train speech-tokenizer --corpus data/tiny --out runs/speech-tokenizer-phones --layer1 units "
    "--unit-objective phones --unit-sentences 1000 --unit-voices 4 --init src/anygpt/assets/speech-tokenizer-units "
    "--steps 2000 --warmup 50 --lr 1e-3 --export src/anygpt/assets/speech-tokenizer-phones")
SOUNDSTORM_PHONES_RETRAIN = (
    "anygpt train soundstorm --corpus data/tiny --codec src/anygpt/assets/speech-tokenizer-phones "
    "--init src/anygpt/assets/soundstorm-units --out runs/soundstorm-phones --steps 8000 --warmup 50 "
    "--export src/anygpt/assets/soundstorm-phones")

# ---------------------------------------------------------------- music tokenizer "compact"
# 16 kHz mono, 50 code frames per second, 4 codebooks of 1024 (2 kbps, 200 LM tokens per second).
MUSIC_CODEC_TINY_DIR = ASSETS / "music-codec-tiny"
MUSIC_CODEC_RETRAIN = ("anygpt train music-codec --corpus data/tiny --out runs/music-codec --steps 25000 "
                       "--export src/anygpt/assets/music-codec-tiny")

# every shipped folder -> its retrain command (each folder's README gives the same one)
RETRAIN: dict[Path, str] = {
    ANYGPT_TINY_DIR: ANYGPT_TINY_RETRAIN, IMAGE_TOKENIZER_TINY_DIR: IMAGE_TOKENIZER_RETRAIN,
    IMAGE_TOKENIZER_GRID_DIR: IMAGE_TOKENIZER_GRID_RETRAIN,
    SPEECH_TOKENIZER_TINY_DIR: SPEECH_TOKENIZER_RETRAIN, SOUNDSTORM_TINY_DIR: SOUNDSTORM_RETRAIN,
    SPEECH_TOKENIZER_UNITS_DIR: SPEECH_TOKENIZER_UNITS_RETRAIN, SOUNDSTORM_UNITS_DIR: SOUNDSTORM_UNITS_RETRAIN,
    SPEECH_TOKENIZER_PHONES_DIR: SPEECH_TOKENIZER_PHONES_RETRAIN, SOUNDSTORM_PHONES_DIR: SOUNDSTORM_PHONES_RETRAIN,
    MUSIC_CODEC_TINY_DIR: MUSIC_CODEC_RETRAIN,
}


def shipped(folder: Path, files: tuple[str, ...], retrain: str) -> Path:
    """-> folder, after checking that every one of `files` is in it; a missing one is a
    CheckpointError naming it and the command that retrains the folder."""
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"{folder / missing[0]}: a shipped file is missing from this installation; "
                              f"reinstall anygpt, or retrain and export it with `{retrain}`")
    return folder


def shipped_model_folder(name: str) -> Path | None:
    """A shipped model name -> its checked folder; None for any other name."""
    if name not in MODEL_FOLDERS:
        return None
    return shipped(MODEL_FOLDERS[name], ("config.json",), ANYGPT_TINY_RETRAIN)
