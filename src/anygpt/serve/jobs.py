"""A validated chat request -> Job: the conversation as turns (media already encoded, from the
cache, or decoded and waiting for the scheduler to encode them), generation settings, output
modalities, voice. Everything a client can get wrong is found here, before the job is queued,
and reported as a 400/404/413 naming the field."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from anygpt.lm.generation import GenerationSettings, GenerationSettingsError, get_preset
from anygpt.parts import CodesPart, TextPart
from anygpt.serve.errors import APIError, bad_request, too_large
from anygpt.serve.media import (AUDIO_OUTPUT_FORMATS, MediaLimits, audio_from_bytes, audio_seconds, b64_bytes,
                                check_audio_format, image_from_bytes, image_size, split_data_url)
from anygpt.serve.media_cache import MediaCache, content_key
from anygpt.serve.schemas import ChatRequest
from anygpt.templates import Turn

# request modality names -> the model's modality names ("audio" is OpenAI's word for speech)
OUTPUT_MODALITIES = {"text": "text", "audio": "speech", "speech": "speech", "image": "image", "music": "music"}
VOICES = ("default",)  # named voices: the speech tokenizer's shipped default prompt
AUDIO_KINDS = ("speech", "music")


@dataclass
class PendingMedia:
    """A media item decoded from a request: `media` as the tokenizer's `load` gives it ([C, S] or
    [3, H, W]); the scheduler, which owns the tokenizers, encodes it and caches it under `key`."""

    modality: str
    key: str
    media: torch.Tensor


class RequestBudget:
    """What one request may make the server decode, counted as its fields are read: text bytes
    (checked before anything is tokenized: the most text that could fit the model's context),
    image pixels and audio seconds of all its attachments together (checked from each
    container's header, before decoding)."""

    def __init__(self, limits: MediaLimits, max_text_bytes: int | None, context_tokens: int | None):
        self.limits = limits
        self.max_text_bytes = max_text_bytes
        self.context_tokens = context_tokens
        self.text_bytes = self.pixels = 0
        self.seconds = 0.0

    def text(self, text: str, param: str) -> None:
        self.text_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))
        if self.max_text_bytes is not None and self.text_bytes > self.max_text_bytes:
            raise APIError(400, f"{param}: the conversation's text is over {self.max_text_bytes} bytes, more than the "
                                f"model's context of {self.context_tokens} tokens can hold (drop earlier turns or "
                                "shorten the message)", param=param, code="context_length_exceeded")

    def image(self, pixels: int, param: str) -> None:
        self.pixels += pixels
        if self.pixels > self.limits.max_request_pixels:
            raise too_large(param, f"the request's images hold {self.pixels} pixels together, over the limit of "
                                   f"{self.limits.max_request_pixels} per request")

    def audio(self, seconds: float, param: str) -> None:
        self.seconds += seconds
        if self.seconds > self.limits.max_request_audio_seconds:
            raise too_large(param, f"the request's audio lasts {self.seconds:.1f} s together, over the limit of "
                                   f"{self.limits.max_request_audio_seconds:g} s per request")


def max_text_bytes(tokenizer, context_tokens: int) -> int:
    """The most UTF-8 bytes of text that could tokenize into `context_tokens` tokens: the
    context times the longest token's bytes (an upper bound: text past it cannot fit)."""
    longest = max(len(t.encode("utf-8", "replace")) for t in tokenizer.get_vocab())
    return context_tokens * max(longest, 1)


@dataclass
class Job:
    """One chat completion on its way through the scheduler.

    force: the modality the reply starts with (None: the model chooses); ensure: media
    modalities the reply must hold (a segment is appended after the model's turn for each one
    it did not write); banned: modalities the reply must not hold; settings: per pass kind
    (None: the model's own turn, else the modality forced); emit: set for streaming (called
    from the scheduler's threads with events)."""

    turns: list[Turn]
    settings: dict[str | None, GenerationSettings]
    system: str | None = None
    force: str | None = None
    ensure: list[str] = field(default_factory=list)
    banned: list[str] = field(default_factory=list)
    seed: int = 0
    voice: PendingMedia | None = None
    audio_format: str = "wav"
    stream: bool = False
    include_usage: bool = False
    timeout: float = 300.0
    emit: Callable[[Any], None] | None = None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))
    cancel: threading.Event = field(default_factory=threading.Event)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout


def build_job(req: ChatRequest, model, cache: MediaCache, limits: MediaLimits, *, model_name: str,
              timeout: float, max_text: int | None = None, context_tokens: int | None = None) -> Job:
    """Check `req` against the model (which modalities it reads and writes) and decode its media.
    max_text: the most text bytes a request may hold (`max_text_bytes`), checked before any text
    is tokenized; context_tokens: the model's context, named in that error."""
    if req.model is not None and req.model != model_name:
        raise APIError(404, f"model: {req.model!r} is not served here; this server serves {model_name!r}",
                       param="model", code="model_not_found")
    if req.n != 1:
        raise bad_request("n", f"{req.n}: only n=1 is supported")
    if req.stop:
        raise bad_request("stop", "stop sequences are not supported; the reply ends at the model's turn end")
    outputs = _output_modalities(req, model)
    media_out = [m for m in outputs if m != "text"]
    force = None
    if req.force_modality is not None:
        force = OUTPUT_MODALITIES.get(req.force_modality)
        if force is None or force not in media_out:
            raise bad_request("force_modality", f"{req.force_modality!r} must be one of the media modalities "
                                                f"asked for in modalities ({', '.join(media_out) or 'none'})")
    elif "text" not in outputs:
        force = media_out[0]
    banned = [m for m in model.layout.modalities if m not in media_out]
    budget = RequestBudget(limits, max_text, context_tokens)
    system, turns = _turns(req, model, cache, budget)
    voice = _voice(req, model, cache, budget) if "speech" in media_out else None
    audio_format = req.audio.format if req.audio else "wav"
    if audio_format not in AUDIO_OUTPUT_FORMATS:
        raise bad_request("audio.format", f"{audio_format!r}: use one of {', '.join(AUDIO_OUTPUT_FORMATS)}")
    settings = _settings(req, media_out, banned)
    for m in media_out:
        spec = model.layout[m].spec
        need = (spec.frames_per_item or 1) * spec.num_codebooks + 1
        if settings[m].max_new_tokens < need:
            param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise bad_request(param, f"{settings[m].max_new_tokens} is too few for a reply with {m}: its segment "
                                     f"needs at least {need} tokens")
    return Job(turns, settings, system=system, force=force,
               ensure=[m for m in media_out if m != force], banned=banned,
               seed=req.seed if req.seed is not None else int(torch.randint(0, 2**31, ())),
               voice=voice, audio_format=audio_format, stream=req.stream,
               include_usage=bool(req.stream_options and req.stream_options.include_usage), timeout=timeout)


def _output_modalities(req: ChatRequest, model) -> list[str]:
    asked = req.modalities if req.modalities is not None else ["text"]
    if not asked:
        raise bad_request("modalities", "name at least one of text, audio, image, music")
    out: list[str] = []
    for i, name in enumerate(asked):
        m = OUTPUT_MODALITIES.get(name)
        if m is None:
            raise bad_request(f"modalities[{i}]", f"unknown modality {name!r}; use text, audio, image or music")
        if m != "text" and m not in model.tokenizers:
            raise bad_request(f"modalities[{i}]", f"this model cannot write {m}: it has no {m} de-tokenizer")
        if m not in out:
            out.append(m)
    return out


def _settings(req: ChatRequest, media_out: list[str], banned: list[str]) -> dict[str | None, GenerationSettings]:
    """The preset of each pass (the model's own turn: the text preset with room for the largest
    media asked for; a forced segment: its modality's preset), with the request's overrides;
    `banned` modalities get max_frames 0 (the constraint never starts their segments)."""
    max_new = req.max_completion_tokens or req.max_tokens
    overrides: dict[str, Any] = dict(max_new_tokens=max_new, top_p=req.top_p, top_k=req.top_k,
                                     repetition_penalty=req.repetition_penalty,
                                     max_frames={m: 0 for m in banned} or None)
    if req.temperature is not None:
        if req.temperature == 0:
            overrides["do_sample"] = False
        else:
            overrides["temperature"] = req.temperature
    own = get_preset("text")
    own = own.with_(max_new_tokens=max([own.max_new_tokens] + [get_preset(m).max_new_tokens for m in media_out]))
    out = {None: own.with_(**overrides)}
    for m in media_out:
        out[m] = get_preset(m).with_(**overrides)
    try:
        for s in out.values():
            s.check()
    except GenerationSettingsError as e:
        raise bad_request("body", str(e)) from None
    return out


def _turns(req: ChatRequest, model, cache: MediaCache, budget: RequestBudget) -> tuple[str | None, list[Turn]]:
    system: list[str] = []
    turns: list[Turn] = []
    for i, msg in enumerate(req.messages):
        where = f"messages[{i}]"
        if msg.role in ("system", "developer"):
            system.append(_text_only(msg.content, f"{where}.content"))
            budget.text(system[-1], f"{where}.content")
            continue
        parts = _parts(msg.content, f"{where}.content", msg.role, model, cache, budget)
        if msg.role == "assistant" and msg.audio is not None:
            parts.append(_earlier_audio(msg.audio, f"{where}.audio", cache))
        if not parts:
            raise bad_request(f"{where}.content", "a message needs text or media")
        turns.append(Turn(msg.role, parts))
    if not turns or turns[-1].role != "user":
        raise bad_request("messages", "the last message must be the user's (the model answers it)")
    return ("\n".join(system) if system else None), turns


def _text_only(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, p in enumerate(content or []):
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise bad_request(f"{param}[{j}]", "a system message holds text parts only")
        texts.append(p["text"])
    return "".join(texts)


def _parts(content: Any, param: str, role: str, model, cache: MediaCache, budget: RequestBudget) -> list:
    """A message's content -> its parts; text that is empty or only whitespace is no part (a
    message of nothing else is refused by the caller, as an empty one)."""
    if content is None:
        return []
    if isinstance(content, str):
        budget.text(content, param)
        return [TextPart(content)] if content.strip() else []
    parts: list = []
    allowed = ("text", "image_url", "input_audio") if role == "user" else ("text", "image_url", "output_audio")
    for j, p in enumerate(content):
        where = f"{param}[{j}]"
        kind = p.get("type")
        if kind not in allowed:
            raise bad_request(f"{where}.type", f"{kind!r} is not a {role} content part here; use one of "
                                               f"{', '.join(allowed)}")
        body = p.get(kind)
        if kind == "text":
            if not isinstance(body, str):
                raise bad_request(f"{where}.text", "expected a string")
            budget.text(body, f"{where}.text")
            if body.strip():
                parts.append(TextPart(body))
            continue
        if not isinstance(body, dict):
            raise bad_request(f"{where}.{kind}", "expected an object")
        if kind == "image_url":
            parts.append(_image(body.get("url"), f"{where}.image_url.url", model, cache, budget))
        else:
            parts.append(_audio(body, f"{where}.{kind}", model, cache, budget))
    return parts


def _tokenizer(model, modality: str, param: str):
    tok = model.tokenizers.get(modality)
    if tok is None:
        raise bad_request(param, f"this model cannot read {modality}: it has no {modality} tokenizer",
                          code="unsupported_modality")
    return tok


def _image(url: Any, param: str, model, cache: MediaCache, budget: RequestBudget):
    tok = _tokenizer(model, "image", param)
    limits = budget.limits
    mime, data = split_data_url(url, param, limits)
    key = content_key("image", data)
    codes = cache.get(key)
    if codes is not None:
        return CodesPart("image", codes)
    w, h = image_size(data, mime, param, limits)
    budget.image(w * h, param)
    size = tok.image_size[0] if tok.image_size else None
    return PendingMedia("image", key, image_from_bytes(data, mime, param, limits, size))


def _audio(body: dict, param: str, model, cache: MediaCache, budget: RequestBudget):
    kind = body.get("kind", "speech")
    if not isinstance(kind, str) or kind not in AUDIO_KINDS:
        raise bad_request(f"{param}.kind", f"{kind!r}: use one of {', '.join(AUDIO_KINDS)}")
    tok = _tokenizer(model, kind, param)
    data = b64_bytes(body.get("data"), f"{param}.data", budget.limits)
    key = content_key(kind, data)
    codes = cache.get(key)
    if codes is not None:  # the format is not even looked at: these bytes were read before
        return CodesPart(kind, codes)
    return PendingMedia(kind, key, _decoded_audio(data, body.get("format"), param, tok, budget))


def _decoded_audio(data: bytes, fmt: Any, param: str, tok, budget: RequestBudget) -> torch.Tensor:
    """Checked format and header (budget counted) -> the decoded audio."""
    check_audio_format(fmt, f"{param}.format")
    budget.audio(audio_seconds(data, fmt, f"{param}.data", budget.limits), f"{param}.data")
    return audio_from_bytes(data, fmt, f"{param}.data", budget.limits, tok)


def _earlier_audio(audio: dict, param: str, cache: MediaCache) -> CodesPart:
    """An earlier reply's speech, by the id the server gave it (OpenAI's way to refer to it)."""
    audio_id = audio.get("id")
    codes = cache.get(f"audio:{audio_id}") if isinstance(audio_id, str) else None
    if codes is None:
        raise bad_request(f"{param}.id", f"{audio_id!r} is not an audio reply this server remembers "
                                         "(unknown or dropped from its cache); send the audio as an "
                                         "output_audio content part instead")
    return CodesPart("speech", codes)


def _voice(req: ChatRequest, model, cache: MediaCache, budget: RequestBudget) -> PendingMedia | None:
    voice = req.audio.voice if req.audio else "default"
    if isinstance(voice, str):
        if voice not in VOICES:
            raise bad_request("audio.voice", f"unknown voice {voice!r}; named voices: {', '.join(VOICES)}; "
                                             "or send ~3 s of speech as {\"data\": base64, \"format\": \"wav\"}")
        return None
    tok = _tokenizer(model, "speech", "audio.voice")
    if not hasattr(tok, "prompt_codes"):
        raise bad_request("audio.voice", "this model's speech tokenizer cannot take a voice prompt")
    data = b64_bytes(voice.data, "audio.voice.data", budget.limits)
    return PendingMedia("voice", content_key("voice", data), _decoded_audio(data, voice.format, "audio.voice", tok, budget))
