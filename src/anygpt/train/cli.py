"""`anygpt train NAME ...`: dispatch to one trainer module (imported only when it runs)."""

from __future__ import annotations

import importlib
import sys

from anygpt.errors import UsageError

# name -> (module with main(argv), one-line summary)
TRAINERS: dict[str, tuple[str, str]] = {
    "lm": ("anygpt.train.lm", "the language model: pretraining or chat fine-tuning on block shards (accelerate)"),
    "music-codec": ("anygpt.train.music_codec", "the compact music codec (4 codebooks)"),
    "speech-tokenizer": ("anygpt.train.speech_tokenizer", "the compact speech tokenizer (content-bearing layer 1)"),
    "soundstorm": ("anygpt.train.soundstorm", "the compact SoundStorm acoustic model (voice cloning)"),
    "image-tokenizer": ("anygpt.train.image_tokenizer", "the compact SEED-style image tokenizer and decoder"),
}

USAGE = """usage: anygpt train NAME [ARGS] ...

trainers:
{listing}

Run `anygpt train NAME --help` for its options.

examples:
  anygpt train lm --blocks data/tiny-seq/blocks-pretrain --val-blocks data/tiny-seq/blocks-val --preset tiny --out runs/lm
  anygpt train music-codec --corpus data/tiny --out runs/music-codec --steps 25000 --export runs/music-codec/export
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    listing = "\n".join(f"  {n:<16} {s}" for n, (_, s) in TRAINERS.items())
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(listing=listing))
        return 0
    if argv[0] not in TRAINERS:
        raise UsageError(f"{argv[0]}: no such trainer; trainers: {', '.join(TRAINERS)}")
    return int(importlib.import_module(TRAINERS[argv[0]][0]).main(argv[1:]) or 0)
