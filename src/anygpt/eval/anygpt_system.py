"""A trained AnyGPT model as a system under test (`--system anygpt --system-option model=...`).

Each ability is one prompt in the format the model was pretrained on (anygpt.templates.
instruction_prompt: pretraining_prompt with the first instruction of that modality's pool):

    transcribe / caption / describe_music   X -> text: the reply up to its end token
    speak / draw / compose                  text -> X: the reply is forced to start with the
                                            modality's start marker; constrained decoding makes
                                            the segment well-formed; the shipped de-tokenizers
                                            turn the codes into a WAV or PNG (speech through
                                            SoundStorm in the voice of the prompt, or the
                                            tokenizer's default voice)

Decoding per output modality (the paper evaluates text with beam search and images and speech
with top-p 0.7): greedy for text and images by default, top-p sampling for speech and music;
options `text_beams` (beam search width for text), `text_repetition_penalty`, `image_top_p`,
`speech_top_p`, `music_top_p`, `seed`, and `image_cfg`: classifier-free guidance for drawing
at that scale (against the same prompt with an empty caption: anygpt.lm.guidance; for models
trained with `cfg_drop` in their blocks; 1: none; default: the model folder's own setting, as
`anygpt chat` draws, e.g. 1.5 for anygpt-tiny, else 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anygpt.errors import AnyGPTError
from anygpt.lm.generation import GenerationSettings
from anygpt.parts import CodesPart, MediaFilePart, Part, TextPart
from anygpt.templates import instruction_prompt

# new tokens per reply: a caption or transcript; 32 image codes; up to 12 s of 25 Hz speech;
# up to 6 s of 50 Hz x 4 music codes
MAX_NEW = {"text": 80, "image": 40, "speech": 320, "music": 1250}


class AnyGPTSystem:
    """model: a model name or folder (anygpt.loaders). Options arrive as strings from the CLI."""

    name = "anygpt"

    def __init__(self, model: Any = "anygpt-tiny", seed: int | str = 0, image_top_p: float | str = 0.0,
                 speech_top_p: float | str = 0.7, music_top_p: float | str = 0.9, text_beams: int | str = 1,
                 text_repetition_penalty: float | str = 1.0, image_cfg: float | str | None = None,
                 threads: int | str | None = None):
        from anygpt.loaders import load_model

        if threads:
            torch.set_num_threads(int(threads))
        self.model = load_model(model) if isinstance(model, (str, Path)) else model
        self.name = f"anygpt:{model}" if isinstance(model, (str, Path)) else "anygpt"
        self.seed = int(seed)
        self.calls = 0
        self.top_p = {"image": float(image_top_p), "speech": float(speech_top_p), "music": float(music_top_p)}
        self.text = {"num_beams": int(text_beams), "repetition_penalty": float(text_repetition_penalty)}
        self.image_cfg = self.model.preset("image").cfg_scale if image_cfg is None else float(image_cfg)
        GenerationSettings(**self.text).check()  # a bad option is named before any model call
        GenerationSettings(cfg_scale=self.image_cfg).check()

    # ----------------------------------------------------------------- core
    def settings(self, modality: str) -> GenerationSettings:
        if modality == "text":
            return GenerationSettings(max_new_tokens=MAX_NEW["text"], do_sample=False, **self.text)
        top_p = self.top_p.get(modality, 0.0)
        return GenerationSettings(max_new_tokens=MAX_NEW[modality], do_sample=top_p > 0, top_p=top_p or 1.0,
                                  cfg_scale=self.image_cfg if modality == "image" else 1.0)

    def complete(self, parts: list[Part], output: str) -> list[TextPart | CodesPart]:
        """Prompt parts -> the reply's parts (text, or one media segment of `output`)."""
        self.calls += 1
        force = None if output == "text" else output
        return self.model.complete(parts, settings=self.settings(output), force_modality=force,
                                   seed=self.seed + self.calls)

    def to_text(self, modality: str, path: Path) -> str:
        media = self.model.encode_media(MediaFilePart(modality, Path(path)))
        prompt = instruction_prompt("to_text", modality, media=media)
        return "".join(p.text for p in self.complete(prompt, "text") if isinstance(p, TextPart)).strip()

    def from_text(self, modality: str, text: str) -> CodesPart:
        prompt = instruction_prompt("from_text", modality, text=text)
        media = [p for p in self.complete(prompt, modality) if isinstance(p, CodesPart)]
        if not media:
            raise AnyGPTError(f"the model wrote no {modality} segment for {text[:60]!r}")
        return media[0]

    # ----------------------------------------------------------------- tasks
    def transcribe(self, wav_path: Path) -> str:
        return self.to_text("speech", wav_path)

    def caption(self, image_path: Path) -> str:
        return self.to_text("image", image_path)

    def describe_music(self, wav_path: Path) -> str:
        return self.to_text("music", wav_path)

    def speak(self, text: str, voice_prompt: Path | None, out_path: Path) -> Path:
        context = {"voice_prompt": voice_prompt} if voice_prompt is not None else {}
        return self._save(self.from_text("speech", text), out_path, **context)

    def draw(self, caption: str, out_path: Path) -> Path:
        return self._save(self.from_text("image", caption), out_path)

    def compose(self, caption: str, out_path: Path) -> Path:
        return self._save(self.from_text("music", caption), out_path)

    def _save(self, part: CodesPart, out_path: Path, **context) -> Path:
        tok = self.model.tokenizers.get(part.modality)
        if tok is None:
            raise AnyGPTError(f"the model has no {part.modality} de-tokenizer to write {out_path}")
        return tok.save(self.model.decode_media(part, **context), Path(out_path))


def load(**options: Any) -> AnyGPTSystem:
    """Factory for `--system anygpt.eval.anygpt_system:load` (the built-in name is `anygpt`)."""
    return AnyGPTSystem(**options)
