"""Music transcription with basic-pitch (its shipped ONNX model) and note-level F1.

`transcribe_notes` turns audio into notes (onset s, offset s, MIDI pitch, amplitude). `note_f1`
compares two note lists with mir_eval's onset-only matching (onset within 50 ms and same pitch
within 50 cents; offsets ignored), the usual transcription F1.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from anygpt.media_io import load_audio, save_audio

BASIC_PITCH_SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Note:
    onset: float  # seconds
    offset: float  # seconds
    pitch: int  # MIDI number
    velocity: float = 1.0  # amplitude in [0, 1]


@contextlib.contextmanager
def _quiet():
    """basic-pitch logs warnings about tflite/tensorflow/coreml absence on import; hide them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@functools.lru_cache(maxsize=1)
def basic_pitch_model():
    """basic_pitch.inference.Model on the shipped ONNX file, loaded once per process."""
    with _quiet():
        from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
        from basic_pitch.inference import Model

        return Model(build_icassp_2022_model_path(FilenameSuffix.onnx))


def transcribe_notes(audio: str | Path | np.ndarray, *, sample_rate: int | None = None,
                     onset_threshold: float = 0.5, frame_threshold: float = 0.3,
                     min_note_ms: float = 80.0) -> list[Note]:
    """Audio (a path, or mono samples [S] at `sample_rate`) -> notes sorted by onset."""
    with _quiet():
        from basic_pitch.inference import predict

    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(audio, (str, Path)):
            wav = load_audio(audio, BASIC_PITCH_SAMPLE_RATE)  # clear MediaError on bad input
        else:
            if sample_rate is None:
                raise ValueError("transcribe_notes: pass sample_rate with raw samples")
            import soxr
            x = np.asarray(audio, dtype=np.float32).reshape(-1)
            x = soxr.resample(x, sample_rate, BASIC_PITCH_SAMPLE_RATE) if sample_rate != BASIC_PITCH_SAMPLE_RATE else x
            import torch
            wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)
        path = save_audio(wav, Path(tmp) / "clip.wav", BASIC_PITCH_SAMPLE_RATE)
        with _quiet(), contextlib.redirect_stdout(None):
            _, _, events = predict(path, basic_pitch_model(), onset_threshold=onset_threshold,
                                   frame_threshold=frame_threshold, minimum_note_length=min_note_ms)
    notes = [Note(float(s), float(e), int(p), float(a)) for s, e, p, a, *_ in events]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def notes_to_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    """notes -> (intervals float [N, 2] seconds, pitches float [N] Hz) as mir_eval wants."""
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    intervals = np.array([[n.onset, max(n.offset, n.onset + 1e-3)] for n in notes])
    pitches = 440.0 * 2.0 ** ((np.array([n.pitch for n in notes], dtype=float) - 69) / 12)
    return intervals, pitches


def note_f1(reference: Sequence[Note], estimate: Sequence[Note], onset_tolerance: float = 0.05) -> dict:
    """Onset-only note precision, recall, F1 (mir_eval.transcription; offsets ignored)."""
    import mir_eval

    if not reference and not estimate:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not reference or not estimate:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    ri, rp = notes_to_arrays(reference)
    ei, ep = notes_to_arrays(estimate)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, rp, ei, ep, onset_tolerance=onset_tolerance, offset_ratio=None)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def audio_note_f1(reference_audio, estimate_audio, *, sample_rate: int | None = None) -> dict:
    """Note F1 between basic-pitch transcriptions of a reference and a reconstruction."""
    ref = transcribe_notes(reference_audio, sample_rate=sample_rate)
    est = transcribe_notes(estimate_audio, sample_rate=sample_rate)
    return {**note_f1(ref, est), "ref_notes": len(ref), "est_notes": len(est)}
