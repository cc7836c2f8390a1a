"""Music attributes read from audio: tempo (onsets), key and mode (basic-pitch + music21), register.

- Tempo: librosa's onset-strength envelope and its tempogram/beat tracker -> BPM. Tempo
  estimates commonly land on a multiple of the notated tempo, so accuracy is reported both
  strictly (within 8%) and allowing octave errors (x2, x1/2, x3, x1/3), the MIREX habit.
- Key and mode: basic-pitch notes, weighted by duration, analysed with music21's
  Krumhansl-Schmuckler key finder (`Stream.analyze("key")`).
- Register: the median MIDI pitch of the transcribed notes, named by `register_name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from anygpt.eval.music_notes import Note, transcribe_notes
from anygpt.media_io import load_audio

TEMPO_SAMPLE_RATE = 22050
PITCH_CLASSES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")
# register from the median MIDI pitch (C4 = 60), as the music corpus defines it:
# low below 55 (G3), high above 72 (C5), middle in between
REGISTER_LOW, REGISTER_HIGH = 55, 72


def estimate_tempo(audio: str | Path | np.ndarray, *, sample_rate: int | None = None,
                   min_bpm: float = 40.0, max_bpm: float = 220.0, prior_bpm: float = 110.0) -> float:
    """Tempo in BPM from the onset envelope (path, or mono samples [S] at sample_rate).

    The onset-strength envelope (librosa, hop 256) is autocorrelated over the whole clip; the
    strongest lag in [min_bpm, max_bpm] wins after a weak log-normal prior (1.5 octaves wide,
    centred on prior_bpm) that only breaks near-ties between a tempo and its multiples.
    The peak lag is refined by parabolic interpolation.
    """
    import librosa

    if isinstance(audio, (str, Path)):
        y = load_audio(audio, TEMPO_SAMPLE_RATE)[0].numpy()
        sr = TEMPO_SAMPLE_RATE
    else:
        y, sr = np.asarray(audio, dtype=np.float32).reshape(-1), int(sample_rate or TEMPO_SAMPLE_RATE)
    hop = 256
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    env = env - env.mean()
    if not np.any(env):
        return 0.0
    ac = np.correlate(env, env, mode="full")[len(env) - 1:]
    ac = ac / (ac[0] + 1e-12)
    fps = sr / hop
    lags = np.arange(len(ac), dtype=float)
    with np.errstate(divide="ignore"):
        bpm = 60.0 * fps / lags
    ok = (bpm >= min_bpm) & (bpm <= max_bpm)
    if not ok.any():
        return 0.0
    weight = np.exp(-0.5 * (np.log2(bpm[ok] / prior_bpm) / 1.5) ** 2)
    idx = np.nonzero(ok)[0][int(np.argmax(ac[ok] * weight))]
    if 0 < idx < len(ac) - 1:  # parabolic refinement of the peak lag
        a, b, c = ac[idx - 1], ac[idx], ac[idx + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return float(60.0 * fps / (idx + float(np.clip(shift, -0.5, 0.5))))
    return float(bpm[idx])


def tempo_matches(estimate: float, truth: float, tolerance: float = 0.08, octave: bool = False) -> bool:
    """True if estimate is within `tolerance` (relative) of truth, or of 2x, 1/2x, 3x, 1/3x if octave."""
    factors = (1.0, 2.0, 0.5, 3.0, 1 / 3) if octave else (1.0,)
    return any(abs(estimate - truth * f) <= tolerance * truth * f for f in factors)


def estimate_key(notes: Sequence[Note]) -> tuple[str, str]:
    """(tonic, mode) of notes, e.g. ("E-", "major"), by music21's Krumhansl-Schmuckler analysis.

    Tonic spelled as music21 writes it ('-' for flat); compare with same_key, which treats
    enharmonic spellings as equal.
    """
    from music21 import note as m21note
    from music21 import stream

    if not notes:
        return ("C", "unknown")
    s = stream.Stream()
    for n in notes:
        dur = max(n.offset - n.onset, 0.05)
        m = m21note.Note(n.pitch)
        m.quarterLength = round(dur * 2, 2)  # seconds at 120 BPM -> quarter lengths
        s.insert(round(n.onset * 2, 2), m)
    k = s.analyze("key")
    return (k.tonic.name, k.mode)


def _pitch_class(name: str) -> int:
    from music21 import pitch

    return pitch.Pitch(name.replace("b", "-") if len(name) > 1 and name[1] == "b" else name).pitchClass


def same_key(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Tonic pitch classes equal (enharmonics allowed: D# == E-) and same mode."""
    return _pitch_class(a[0]) == _pitch_class(b[0]) and a[1].lower() == b[1].lower()


def relative_or_same_key(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """same_key, or one is the relative major/minor of the other (e.g. C major / A minor)."""
    if same_key(a, b):
        return True
    pa, pb = _pitch_class(a[0]), _pitch_class(b[0])
    if a[1] == "major" and b[1] == "minor":
        return (pa - 3) % 12 == pb
    if a[1] == "minor" and b[1] == "major":
        return (pb - 3) % 12 == pa
    return False


def register_name(notes: Sequence[Note], low: float = REGISTER_LOW, high: float = REGISTER_HIGH) -> str | None:
    """'low' | 'middle' | 'high' from the median MIDI pitch of notes (None when there are none)."""
    if not notes:
        return None
    med = float(np.median([n.pitch for n in notes]))
    return "low" if med < low else "high" if med > high else "middle"


def music_attributes(audio: str | Path | np.ndarray, *, sample_rate: int | None = None) -> dict:
    """{"tempo": bpm, "tonic": str, "mode": str, "key": "E- major", "median_pitch": float,
    "register": str, "n_notes": int} read from one clip."""
    notes = transcribe_notes(audio, sample_rate=sample_rate)
    tonic, mode = estimate_key(notes)
    return {
        "tempo": estimate_tempo(audio, sample_rate=sample_rate),
        "tonic": tonic, "mode": mode, "key": f"{tonic} {mode}",
        "median_pitch": float(np.median([n.pitch for n in notes])) if notes else None,
        "register": register_name(notes),
        "n_notes": len(notes),
    }


def parse_key(text: str) -> tuple[str, str | None] | None:
    """'D minor' / 'Bb major' / 'F# minor' / 'E-' -> (tonic, mode or None); None if unreadable."""
    import re

    m = re.match(r"\s*([A-Ga-g])\s*(#|b|-|♯|♭|sharp|flat)?\s*(major|minor)?", str(text))
    if not m:
        return None
    acc = {"#": "#", "♯": "#", "sharp": "#", "b": "-", "-": "-", "♭": "-", "flat": "-"}.get(m.group(2) or "", "")
    return (m.group(1).upper() + acc, m.group(3))


def compare_music(estimated: dict, truth: dict) -> dict:
    """Compare music_attributes() output with ground-truth metadata.

    truth may hold tempo_bpm (or tempo, bpm) in BPM, key ("D minor"), tonic, mode and register; missing
    ones are skipped. Returns booleans: tempo (within 8%), tempo_octave (x2, x1/2, x3, x1/3
    allowed), key (tonic and mode), key_relative (relative major/minor accepted), mode,
    register.
    """
    out: dict[str, bool] = {}
    bpm = truth.get("tempo_bpm", truth.get("tempo", truth.get("bpm")))
    if isinstance(bpm, (int, float)) and bpm > 0 and estimated.get("tempo"):
        out["tempo"] = tempo_matches(estimated["tempo"], float(bpm))
        out["tempo_octave"] = tempo_matches(estimated["tempo"], float(bpm), octave=True)
    tonic, mode = truth.get("tonic"), truth.get("mode")
    if truth.get("key"):
        parsed = parse_key(truth["key"])
        if parsed:
            tonic = tonic or parsed[0]
            mode = mode or parsed[1]
    if mode:
        out["mode"] = str(mode).lower() == estimated.get("mode")
    if tonic and mode:
        est = (estimated["tonic"], estimated["mode"])
        out["key"] = same_key(est, (tonic, str(mode).lower()))
        out["key_relative"] = relative_or_same_key(est, (tonic, str(mode).lower()))
    if truth.get("register") and estimated.get("register"):
        out["register"] = str(truth["register"]).lower() == estimated["register"]
    return out
