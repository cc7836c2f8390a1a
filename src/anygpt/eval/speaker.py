"""Speaker similarity: resemblyzer d-vectors (256-d, L2-normalised) and cosine similarity.

The encoder (17 MB, shipped inside the resemblyzer package) loads on first use and is cached
per process. Same voice scores about 0.85-0.95, different voices about 0.5-0.7.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable

import numpy as np

from anygpt.media_io import load_audio

RESEMBLYZER_SAMPLE_RATE = 16000


@functools.lru_cache(maxsize=1)
def voice_encoder():
    """resemblyzer.VoiceEncoder on CPU, loaded once per process."""
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def embed_speaker(audio: str | Path | np.ndarray, *, sample_rate: int = RESEMBLYZER_SAMPLE_RATE) -> np.ndarray:
    """One clip (path, or float samples [S] at sample_rate) -> unit-norm embedding float32 [256]."""
    from resemblyzer import preprocess_wav

    if isinstance(audio, (str, Path)):
        wav, sr = load_audio(audio, RESEMBLYZER_SAMPLE_RATE)[0].numpy(), RESEMBLYZER_SAMPLE_RATE
    else:
        wav, sr = np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate
    wav = preprocess_wav(wav, source_sr=sr)  # resample, normalise volume, trim long silences
    if len(wav) == 0:
        raise ValueError(f"{audio if isinstance(audio, (str, Path)) else 'clip'}: no speech left after trimming silence")
    return voice_encoder().embed_utterance(wav).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors [D]."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def speaker_similarity(a: str | Path | np.ndarray, b: str | Path | np.ndarray) -> float:
    """Cosine between the embeddings of two clips (paths or samples at 16 kHz)."""
    return cosine(embed_speaker(a), embed_speaker(b))


def speaker_centroid(clips: Iterable[str | Path | np.ndarray]) -> np.ndarray:
    """Unit-norm mean embedding of a speaker's clips: float32 [256]."""
    embs = np.stack([embed_speaker(c) for c in clips])
    if len(embs) == 0:
        raise ValueError("speaker_centroid needs at least one clip")
    c = embs.mean(axis=0)
    return (c / (np.linalg.norm(c) + 1e-12)).astype(np.float32)


def centroid_similarity(clip: str | Path | np.ndarray, centroid: np.ndarray) -> float:
    """Cosine between one clip and a speaker's centroid (from speaker_centroid)."""
    return cosine(embed_speaker(clip), centroid)
