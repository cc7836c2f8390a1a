"""Golden codes: every shipped tokenizer, on small inputs made here, gives exactly the codes
recorded in golden_codes.json. Any change to shipped weights or to code on the encode path
that moves a single code fails here; a missing shipped file fails too (never a skip).

The codes were recorded with `python3 tests/modalities/test_golden_codes.py --record [NAME ...]`
(only the named entries, e.g. `speech-units`; all of them without names); re-record only for a
deliberate change or addition of shipped weights, and say so in the commit.

The compact tokenizers encode under bf16 autocast, and bf16 matmuls round differently on CPUs
with and without AMX, so a near tie can flip: on one Xeon with AMX, one of the 64 image codes
went to a code whose cosine similarity was 0.8174 instead of 0.8170. So up to 3% of a
tokenizer's codes (at least one) may move; a change of weights or of the encode path moves far
more than that.

The layer 1 of "units" and "phones" comes from Whisper tiny.en run by CTranslate2 in int8,
whose kernels differ by CPU: on an AMD EPYC 2 of the 30 recorded "units" moved (recorded on an
Intel Xeon), and every code after them follows (the acoustic layers code the rest of the latent,
and SoundStorm samples from layer 1). So their layer 1 may move by up to 10%, and the codes after
it are checked from the recorded layer 1, where only the codec and SoundStorm's own arithmetic
count.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

from anygpt.modalities import load_tokenizer

GOLDEN = Path(__file__).with_name("golden_codes.json")


def drawn_scenes() -> torch.Tensor:
    """Two scenes of the scene renderer (seeded): FloatTensor [2, 3, 64, 64] in [0, 1]."""
    from anygpt.data import scenes

    rng = random.Random(0)
    imgs = [np.asarray(scenes.render_scene(scenes.sample_scene(rng, heldout=False), 64), dtype=np.float32) / 255
            for _ in range(2)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


def voiced_audio(seconds: float = 1.2, sr: int = 16000) -> torch.Tensor:
    """A voice-like signal: gliding f0 with harmonics under two formant bumps, plus seeded noise.
    FloatTensor [1, 1, S]."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.exp(-((h * 130 - 700) / 400) ** 2 - ((h * 130 - 1800) / 600) ** 2 * 0.5) * np.sin(h * phase)
              for h in range(1, 25))
    wav = wav / np.abs(wav).max() * 0.6 + 0.01 * rng.standard_normal(t.size)
    return torch.from_numpy(wav.astype(np.float32))[None, None]


def tune(seconds: float = 1.0, sr: int = 16000) -> torch.Tensor:
    """Four plucked notes (decaying harmonics) plus seeded noise: FloatTensor [1, 1, S]."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * sr)) / sr
    wav = np.zeros_like(t)
    for k, midi in enumerate((60, 64, 67, 72)):
        start = k * seconds / 4
        u = np.clip(t - start, 0, None)
        f = 440 * 2 ** ((midi - 69) / 12)
        wav += (t >= start) * np.exp(-4 * u) * sum(np.sin(2 * np.pi * f * h * u) / h for h in (1, 2, 3))
    wav = wav / np.abs(wav).max() * 0.5 + 0.005 * rng.standard_normal(t.size)
    return torch.from_numpy(wav.astype(np.float32))[None, None]


WHISPER_LAYER1 = ("units", "phones")  # speech tokenizers whose layer 1 Whisper computes


def current_codes(recorded_layer1: dict[str, list] | None = None) -> dict[str, list]:
    """The codes of every shipped tokenizer on the inputs above (loading fails if a file is missing).
    recorded_layer1: {"units": [1, 30] layer 1, ...} for the WHISPER_LAYER1 tokenizers, to code
    the rest from (None: their own)."""
    torch.set_num_threads(1)
    image = load_tokenizer("image", "compact")
    grid = load_tokenizer("image", "grid")
    speech = load_tokenizer("speech", "compact")
    music = load_tokenizer("music", "compact")
    speech_codes = speech.encode(voiced_audio())  # [1, 6, 30]
    acoustic = speech.fill_acoustic(speech_codes[:, 0], voice_prompt=None, seed=0)  # the shipped prompt
    codes = {
        "image": image.encode(drawn_scenes()).tolist(),
        "image-grid": grid.encode(drawn_scenes()).tolist(),
        "speech": speech_codes.tolist(),
        "music": music.encode(tune()).tolist(),
        "soundstorm": acoustic.tolist(),
    }
    for name in WHISPER_LAYER1:
        tok = load_tokenizer("speech", name)
        codes[f"speech-{name}-layer1"] = tok.encode_lm(voiced_audio())[:, 0].tolist()  # int8 Whisper: CPU-dependent
        if recorded_layer1 is not None:
            tok.codec.content_units = lambda wav, units=recorded_layer1[name]: torch.tensor(units)
        whole = tok.encode(voiced_audio())  # [1, 6, 30]
        codes[f"speech-{name}"] = whole.tolist()
        codes[f"soundstorm-{name}"] = tok.fill_acoustic(whole[:, 0], voice_prompt=None, seed=0).tolist()
    return codes


def test_shipped_tokenizers_give_the_recorded_codes():
    want = json.loads(GOLDEN.read_text())
    recorded = {name: [want[f"speech-{name}"][0][0]] for name in WHISPER_LAYER1}
    got = current_codes(recorded)
    for name in WHISPER_LAYER1:
        want[f"speech-{name}-layer1"] = recorded[name]  # recorded as layer 1 of "speech-NAME"
    assert set(got) == set(want)
    for name in want:
        g, w = torch.tensor(got[name]), torch.tensor(want[name])
        assert g.shape == w.shape, f"{name}: shape {tuple(g.shape)} != recorded {tuple(w.shape)}"
        moved = int((g != w).sum())
        share = 0.10 if name.endswith("-layer1") else 0.03  # Whisper's int8 kernels differ by CPU
        assert moved <= max(1, int(share * w.numel())), f"{name}: {moved} of {w.numel()} codes moved from the recorded ones"


if __name__ == "__main__" and "--record" in sys.argv:
    names = sys.argv[sys.argv.index("--record") + 1:]
    codes = current_codes()
    for name in WHISPER_LAYER1:
        codes.pop(f"speech-{name}-layer1")  # it is layer 1 of "speech-NAME"
    kept = json.loads(GOLDEN.read_text()) if names else {}
    GOLDEN.write_text(json.dumps({**kept, **{n: codes[n] for n in names or codes}}) + "\n")
    print(f"recorded {', '.join(names or codes)} in {GOLDEN}")
