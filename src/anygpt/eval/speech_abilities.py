"""Speech recognition of a model in training, scored on fixed held-out sentences (ability curves).

    items = spoken_items(tokenizer, 20, seed=1)      # test-split sentences, spoken once by flite
    asr_scores(model, items, beams=1)                # -> summary {wer, word_accuracy}, rows

The model transcribes each clip's codes (the first speech_to_text instruction, greedy or beam
search); WER is anygpt.eval.asr's (normalised text, total edits over total reference words).
`word_accuracy` = max(0, 1 - WER), so that it plots on the same 0..1 axis as the other
abilities. Text-to-speech WER needs Whisper on the de-tokenized audio and is not scored here.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from anygpt.lm.generation import GenerationSettings
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import instruction_prompt

SPEECH_KEYS = ("word_accuracy", "wer")


@dataclass(frozen=True)
class SpokenItem:
    text: str
    voice: str
    codes: torch.Tensor  # LM-facing speech codes [K, T]


def spoken_items(tokenizer, n: int, seed: int = 1, max_words: int = 12) -> list[SpokenItem]:
    """n test-split sentences (never in the training stream) spoken by flite voices."""
    from anygpt.data.fresh_pairs import FLITE_VOICES, speak, speakable_sentences

    rng = random.Random(f"speech-abilities/{seed}")
    pool = speakable_sentences("test", max_words=max_words)
    chosen = rng.sample(pool, min(n, len(pool)))
    with tempfile.TemporaryDirectory(prefix="anygpt-speak-") as tmp:
        return [SpokenItem(t, v, speak(tokenizer, t, v, Path(tmp)))
                for t, v in ((t, rng.choice(FLITE_VOICES[:3])) for t in chosen)]


@torch.no_grad()
def asr_scores(model, items: list[SpokenItem], *, beams: int = 1, max_new_tokens: int = 60) -> tuple[dict, list[dict]]:
    """-> ({word_accuracy, wer}, rows {text, transcript, voice})."""
    from anygpt.eval.asr import error_rates

    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, num_beams=beams)
    rows = []
    for it in items:
        prompt = instruction_prompt("to_text", "speech", media=CodesPart("speech", it.codes))
        parts = model.complete(prompt, settings=settings, seed=0)
        rows.append({"text": it.text, "voice": it.voice,
                     "transcript": "".join(p.text for p in parts if isinstance(p, TextPart)).strip()})
    wer = error_rates([r["text"] for r in rows], [r["transcript"] for r in rows])["wer"]
    return {"word_accuracy": max(0.0, 1.0 - wer), "wer": wer}, rows
