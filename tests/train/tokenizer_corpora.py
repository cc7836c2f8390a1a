"""Small corpora made in the test, in the layout `anygpt data build` writes (CORPUS/MODALITY/
manifest.jsonl + media files), and the small model shapes the trainer tests use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

# tiny shapes: a step takes tens of milliseconds on one thread
MUSIC_ARGS = ["--enc-dim", "32", "--dec-dim", "32", "--dec-blocks", "1", "--codebook-size", "64",
              "--batch", "4", "--seconds", "0.64"]
SPEECH_CODEC = dict(enc_dim=32, enc_blocks=1, dec_dim=32, dec_blocks=1, latent_dim=16, num_codebooks=3,
                    codebook_size=32, semantic_codebook_size=48, decode_phase_iters=2)
SPEECH_ARGS = ["--config", json.dumps(SPEECH_CODEC), "--batch", "4", "--crop-frames", "10"]
STORM_ARGS = ["--config", json.dumps(dict(dim=32, depth=1, heads=2, dim_head=16, ff_mult=2, conv_kernel=7,
                                          dropout=0.0)), "--batch", "8", "--target-frames", "20"]
IMAGE_CONFIG = dict(image_size=16, patch_size=4, dim=32, heads=2, encoder_layers=1, query_layers=1, num_queries=8,
                    codebook_size=32, codebook_dim=8, decoder_layers=1, refine_channels=0, text_dim=12,
                    locality=[16.0, 0.0], upsample_channels=[8, 4])
IMAGE_ARGS = ["--config", json.dumps(IMAGE_CONFIG), "--batch", "8", "--vq-warmup", "4", "--contrastive-weight", "0",
              "--object-weight", "10", "--l2-weight", "10"]


def _write_manifest(folder: Path, rows: list[dict]) -> None:
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_speech_corpus(root: Path, n: int = 12, seconds: float = 2.0, speakers: int = 2) -> Path:
    """root/speech: n generated clips of `speakers` voices, split "train"; -> root."""
    from anygpt.train.speech_tokenizer import synthetic_speech

    folder = root / "speech"
    (folder / "wavs").mkdir(parents=True)
    wavs, spk = synthetic_speech(n, seconds, n_speakers=speakers, seed=1)
    rows = []
    for i, (w, s) in enumerate(zip(wavs, spk)):
        sf.write(folder / "wavs" / f"{i}.wav", w, 16000)
        rows.append({"id": f"c{i}", "path": f"wavs/{i}.wav", "speaker": f"s{s}", "split": "train", "text": ""})
    _write_manifest(folder, rows)
    return root


def write_music_corpus(root: Path, n: int = 4, seconds: float = 2.0) -> Path:
    """root/music: n clips of generated notes at 16 kHz, split "train"; -> root."""
    from anygpt.train.music_codec import synthetic_music

    folder = root / "music"
    folder.mkdir(parents=True)
    rows = []
    for i, clip in enumerate(synthetic_music(n, seconds, 16000, seed=2)):
        sf.write(folder / f"{i}.wav", clip.numpy(), 16000)
        rows.append({"path": f"{i}.wav", "split": "train"})
    _write_manifest(folder, rows)
    return root


def write_image_corpus(root: Path, n_train: int = 32, n_val: int = 8, size: int = 16) -> Path:
    """root/images: rendered scenes as PNG, n_train in split "train" and n_val in "val"; -> root."""
    from anygpt.train.image_tokenizer import render_scenes

    folder = root / "images"
    folder.mkdir(parents=True)
    scenes = render_scenes(n_train + n_val, seed=3, size=size)
    rows = []
    for i, (img, caption, rec) in enumerate(zip(scenes["images"], scenes["captions"], scenes["records"])):
        Image.fromarray(np.ascontiguousarray(img.numpy().transpose(1, 2, 0))).save(folder / f"{i}.png")
        rows.append({**rec, "path": f"{i}.png", "caption": caption, "split": "train" if i < n_train else "val"})
    _write_manifest(folder, rows)
    return root
