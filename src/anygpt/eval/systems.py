"""The system under test: what a model must offer to be scored, and the built-in systems.

A system is any object with some of these methods (a task calls only the one it needs):

    transcribe(wav_path: Path) -> str                                   # asr
    speak(text: str, voice_prompt: Path | None, out_path: Path) -> Out  # tts, voice-clone
    caption(image_path: Path) -> str                                    # caption
    draw(caption: str, out_path: Path) -> Out                           # text-to-image
    describe_music(wav_path: Path) -> str                               # music-caption
    compose(caption: str, out_path: Path) -> Out                        # text-to-music

`Out` is the path of the file written (normally out_path), or the media itself: audio as
(samples [S] or [1, S], sample_rate), an image as a PIL image or FloatTensor [3, H, W] in
[0, 1]; the task then writes it to out_path. Load a system with `--system module:factory`
(factory(**options) -> system); built-ins are "reference" (an oracle that returns the ground
truth, so every task runs end to end and its scores are the instruments' ceiling) and
"whisper" (asr only: the scorer's own ASR, a baseline).

Tokenizers for the reconstruction task follow anygpt.modalities.base.ModalityTokenizer:
load(path), encode(media [B, C, S] | [B, 3, H, W]) -> codes [B, K, T], decode(codes) -> media,
sample_rate or image_size. Built-in: "copy" (lossless PCM/8-bit codes: the identity).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Iterable, Protocol, runtime_checkable

import numpy as np
import torch

from anygpt.errors import AnyGPTError
from anygpt.eval.benchmarks import EvalItem
from anygpt.files import atomic_path
from anygpt.media_io import load_audio, load_image, save_audio, save_image


class SystemLoadError(AnyGPTError, ValueError):
    """A system or tokenizer that cannot be loaded or that lacks the method a task needs."""


@runtime_checkable
class SystemUnderTest(Protocol):
    """Documentation of the protocol; a system implements only the methods its tasks call."""

    def transcribe(self, wav_path: Path) -> str: ...
    def speak(self, text: str, voice_prompt: Path | None, out_path: Path) -> Any: ...
    def caption(self, image_path: Path) -> str: ...
    def draw(self, caption: str, out_path: Path) -> Any: ...
    def describe_music(self, wav_path: Path) -> str: ...
    def compose(self, caption: str, out_path: Path) -> Any: ...


def require_method(system: Any, method: str, task: str) -> None:
    if not callable(getattr(system, method, None)):
        raise SystemLoadError(f"system {getattr(system, 'name', type(system).__name__)!r} has no method "
                           f"{method}(); task {task!r} needs it (see anygpt.eval.systems)")


def _written(result: str | Path) -> Path:
    """A file a system says it wrote, which must exist."""
    p = Path(result)
    if not p.exists():
        raise SystemLoadError(f"system returned {p}, which does not exist")
    return p


def materialise_audio(result: Any, out_path: Path) -> Path:
    """A system's audio output (path or (samples, sample_rate)) -> a file path."""
    if isinstance(result, (str, Path)):
        return _written(result)
    if isinstance(result, tuple) and len(result) == 2:
        wav, sr = result
        wav = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not isinstance(wav, torch.Tensor) else wav).float()
        return save_audio(wav.reshape(1, -1), out_path, int(sr))
    raise SystemLoadError(f"audio output must be a path or (samples, sample_rate), got {type(result).__name__}")


def materialise_image(result: Any, out_path: Path) -> Path:
    """A system's image output (path, PIL image or [3, H, W] tensor) -> a file path."""
    from PIL import Image

    if isinstance(result, (str, Path)):
        return _written(result)
    if isinstance(result, Image.Image):
        with atomic_path(out_path) as tmp:
            result.convert("RGB").save(tmp, format=Image.registered_extensions().get(out_path.suffix.lower(), "PNG"))
        return out_path
    if isinstance(result, torch.Tensor):
        return save_image(result, out_path)
    raise SystemLoadError(f"image output must be a path, PIL image or [3, H, W] tensor, got {type(result).__name__}")


class ReferenceSystem:
    """The oracle: answers every task with the ground truth of the items it was given.

    transcribe -> the item's transcript; speak -> the item's own recording (of the prompt's
    speaker when a prompt is given); caption / describe_music -> the first reference caption;
    draw / compose -> the item's own image / audio. Scores of this system measure the
    instruments themselves (e.g. Whisper's WER on real speech).
    """

    name = "reference"

    def __init__(self, items: Iterable[EvalItem]):
        self.items = list(items)
        self._by_path = {str(Path(i.path).resolve()): i for i in self.items if i.path is not None}
        self._by_text: dict[tuple[str, str | None], EvalItem] = {}
        for i in self.items:
            if i.text is not None:
                self._by_text.setdefault((i.text, i.speaker), i)
                self._by_text.setdefault((i.text, None), i)
            for c in i.captions:
                self._by_text.setdefault((c, None), i)
        self.prompt_speakers: dict[str, str | None] = {}  # prompt path -> speaker (tasks fill it)

    def _item(self, path: Path) -> EvalItem:
        try:
            return self._by_path[str(Path(path).resolve())]
        except KeyError:
            raise SystemLoadError(f"reference system: {path} is not an item of this evaluation") from None

    def _text_item(self, text: str, speaker: str | None = None) -> EvalItem:
        item = self._by_text.get((text, speaker)) or self._by_text.get((text, None))
        if item is None or item.path is None:
            raise SystemLoadError(f"reference system: no item with text {text[:60]!r}")
        return item

    def transcribe(self, wav_path: Path) -> str:
        return self._item(wav_path).text or ""

    def speak(self, text: str, voice_prompt: Path | None, out_path: Path) -> Path:
        spk = self.prompt_speakers.get(str(voice_prompt)) if voice_prompt is not None else None
        return Path(self._text_item(text, spk).path)

    def caption(self, image_path: Path) -> str:
        it = self._item(image_path)
        return it.captions[0] if it.captions else (it.text or "")

    describe_music = caption

    def draw(self, caption: str, out_path: Path) -> Path:
        return Path(self._text_item(caption).path)

    compose = draw


class WhisperSystem:
    """ASR baseline: the scorer's own Whisper tiny.en (so its WER is the instrument's floor)."""

    name = "whisper"

    def transcribe(self, wav_path: Path) -> str:
        from anygpt.eval.asr import transcribe

        return transcribe(wav_path)


def load_system(spec: str, items: list[EvalItem], **options: Any) -> Any:
    """'reference' | 'whisper' | 'anygpt' (a trained model: option model=NAME_OR_DIR) |
    'package.module:factory' -> a system object."""
    if spec == "reference":
        return ReferenceSystem(items)
    if spec == "whisper":
        return WhisperSystem()
    if spec == "anygpt":
        from anygpt.eval.anygpt_system import AnyGPTSystem

        factory = AnyGPTSystem
    else:
        factory = _import_factory(spec, "system")
    check_options(factory, options, f"system {spec!r}")
    return factory(**options)


def check_options(factory, options: dict[str, Any], what: str) -> None:
    """SystemLoadError naming the unknown keys (and the known ones) before `factory` is called."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return  # a builtin without a signature: its own error will do
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        known = ", ".join(n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or "none"
        raise SystemLoadError(f"--system-option {', '.join(unknown)}: not an option of {what}; its options: {known}")


def _import_factory(spec: str, what: str):
    if ":" not in spec:
        raise SystemLoadError(f"unknown {what} {spec!r}; use a built-in name or 'package.module:factory'")
    mod, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod)
    except ImportError as e:
        raise SystemLoadError(f"cannot import {mod!r} for {what} {spec!r}: {e}") from None
    if not hasattr(module, attr):
        raise SystemLoadError(f"{mod!r} has no attribute {attr!r} ({what} {spec!r})")
    return getattr(module, attr)


class CopyTokenizer:
    """Identity tokenizer for the reconstruction task: codes are 16-bit PCM (audio, K=1) or
    8-bit pixels (image, K=3, T=H*W). Its scores are the ceiling of each metric."""

    def __init__(self, modality: str, sample_rate: int | None = None, image_size: tuple[int, int] | None = None):
        self.name = modality
        self.kind = "image" if modality == "image" else "audio"
        self.sample_rate = sample_rate if self.kind == "audio" else None
        self.image_size = image_size if self.kind == "image" else None

    def load(self, path: str | Path) -> torch.Tensor:
        if self.kind == "audio":
            return load_audio(path, self.sample_rate)
        return load_image(path, self.image_size)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        if self.kind == "audio":  # [B, 1, S] -> [B, 1, S]
            return (media.clamp(-1, 1) * 32767).round().long()
        b, c, h, w = media.shape
        self._hw = (h, w)
        return (media.clamp(0, 1) * 255).round().long().reshape(b, c, h * w)

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        if self.kind == "audio":
            return codes.float() / 32767
        h, w = self.image_size or self._hw
        return codes.float().reshape(codes.shape[0], codes.shape[1], h, w) / 255


def load_tokenizer_for_eval(spec: str, modality: str, *, sample_rate: int | None = None,
                            image_size: tuple[int, int] | None = None, **options: Any) -> Any:
    """'copy' | a registered tokenizer name of `modality` | 'package.module:factory'."""
    if spec == "copy":
        return CopyTokenizer(modality, sample_rate=sample_rate, image_size=image_size)
    if ":" in spec:
        return _import_factory(spec, "tokenizer")(**options)
    import anygpt.modalities  # noqa: F401  (registers the modalities)
    from anygpt.modalities.registry import load_tokenizer

    try:
        return load_tokenizer(modality, spec, **options)
    except AnyGPTError as e:
        raise SystemLoadError(str(e)) from None

