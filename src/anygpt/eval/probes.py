"""Ground-truth probes for testing and calibrating the scorers: speech from flite voices and
melodies of known key, mode and tempo rendered with fluidsynth.

These make inputs whose truth is known by construction, independently of the corpora, so the
instruments can be checked where no corpus is built yet.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from pathlib import Path

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)  # natural minor; the leading tone is raised at cadences
TONICS = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")


def flite_say(text: str, voice: str, out: str | Path) -> Path:
    """Speak text with flite voice (kal, awb, rms, slt) into out (WAV, the voice's own rate)."""
    from anygpt.data.corpora.speech import synthesise

    return synthesise("flite", voice, text, out)


def melody_notes(tonic: int, mode: str, bpm: float, rng: random.Random, bars: int = 4,
                 octave: int = 60) -> list[tuple[float, float, int]]:
    """A tonal melody over a I-V-V-I bass: (start s, end s, MIDI pitch) list.

    Melody in quarter and eighth notes on scale degrees, starting and ending on the tonic;
    bass plays the chord root each beat so the tonality is unambiguous, as in real music.
    """
    scale = MAJOR if mode == "major" else MINOR
    beat = 60.0 / bpm
    notes = []
    progression = [0, 4, 4, 0] if bars >= 4 else [0, 4]
    deg = 0
    t = 0.0
    for bar in range(bars):
        root_deg = progression[bar % len(progression)]
        chord = [root_deg, root_deg + 2, root_deg + 4]
        for b in range(4):
            bass = tonic + octave - 24 + scale[root_deg % 7] + 12 * (root_deg // 7)
            notes.append((t + b * beat, t + (b + 0.9) * beat, bass))
        bt = 0.0
        while bt < 4 - 1e-9:
            dur = rng.choice((1.0, 1.0, 0.5)) if bt <= 3 else 1.0
            if bar == bars - 1 and bt >= 2:
                deg, dur = 7 if deg > 3 else 0, 4 - bt
            elif bt == 0:
                deg = rng.choice(chord)
            else:
                deg = max(-2, min(9, deg + rng.choice((-2, -1, -1, 1, 1, 2))))
            pc = scale[deg % 7] + 12 * (deg // 7)
            if mode == "minor" and deg % 7 == 6 and root_deg == 4:
                pc += 1  # raised leading tone over the dominant
            notes.append((t + bt * beat, t + (bt + dur * 0.95) * beat, tonic + octave + pc))
            bt += dur
        t += 4 * beat
    return notes


def render_notes(notes: list[tuple[float, float, int]], out: str | Path, program: int = 0,
                 sample_rate: int = 32000, bpm: float = 120.0) -> Path:
    """Render (start, end, pitch) notes with one General MIDI program via the fluidsynth CLI."""
    import pretty_midi

    exe = shutil.which("fluidsynth")
    if exe is None or not SOUNDFONT.exists():
        raise RuntimeError("fluidsynth or FluidR3_GM.sf2 missing; run `bash scripts/setup.sh`")
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=program)
    for s, e, p in notes:
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=int(p), start=float(s), end=float(e)))
    pm.instruments.append(inst)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "x.mid"
        pm.write(str(mid))
        subprocess.run([exe, "-ni", "-q", "-g", "0.8", "-F", str(out), "-r", str(sample_rate), str(SOUNDFONT), str(mid)],
                       check=True, capture_output=True)
    return out


def melody_clip(out: str | Path, tonic: str, mode: str, bpm: float, seed: int = 0, program: int = 0,
                bars: int = 4) -> tuple[Path, list[tuple[float, float, int]]]:
    """Render a melody of known key/mode/tempo; returns (path, notes)."""
    rng = random.Random(seed)
    notes = melody_notes(TONICS.index(tonic), mode, bpm, rng, bars=bars)
    return render_notes(notes, out, program=program, bpm=bpm), notes
