"""A finished job -> OpenAI's chat.completion object; streamed events -> chat.completion.chunk
objects. The extensions (docs/serve.md): images as `image_url` content parts (data URLs, as
vLLM-Omni), speech as `message.audio` (OpenAI's place; plus `format`, `sample_rate`, `kind`),
music as `output_audio` content parts with `kind: "music"`."""

from __future__ import annotations

import time
from typing import Any

from anygpt.parts import CodesPart, TextPart
from anygpt.serve.jobs import Job
from anygpt.serve.media import b64, data_url
from anygpt.serve.scheduler import JobResult, RenderedMedia

AUDIO_TTL_S = 3600  # expires_at: how long a reply's audio id is promised to be remembered (the cache may drop it sooner)


def completion(job: Job, result: JobResult, model_name: str) -> dict[str, Any]:
    return {
        "id": job.id, "object": "chat.completion", "created": job.created, "model": model_name,
        "choices": [{"index": 0, "message": message(result), "finish_reason": result.finish_reason,
                     "logprobs": None}],
        "usage": usage(result),
    }


def usage(result: JobResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def message(result: JobResult) -> dict[str, Any]:
    """content: the text as a string, or a list of parts (text, image_url, output_audio) in the
    reply's order when it holds images or music; audio: its (first) speech, OpenAI's shape."""
    items: list[dict[str, Any]] = []
    audio = None
    media = iter(result.media)
    for part in result.parts:
        if isinstance(part, TextPart):
            if items and items[-1]["type"] == "text":
                items[-1]["text"] += part.text
            elif part.text:
                items.append({"type": "text", "text": part.text})
            continue
        assert isinstance(part, CodesPart)
        rendered = next(media)
        if rendered.modality == "speech" and audio is None:
            audio = speech_audio(rendered, result.transcript)
        else:
            items.append(media_part(rendered))
    msg: dict[str, Any] = {"role": "assistant"}
    if any(i["type"] != "text" for i in items):
        msg["content"] = items
    else:
        msg["content"] = result.text
    if audio is not None:
        msg["audio"] = audio
    return msg


def speech_audio(rendered: RenderedMedia, transcript: str) -> dict[str, Any]:
    return {"id": rendered.audio_id, "data": b64(rendered.data), "transcript": transcript,
            "expires_at": int(time.time()) + AUDIO_TTL_S, "format": rendered.format,
            "sample_rate": rendered.sample_rate, "kind": "speech"}


def media_part(rendered: RenderedMedia) -> dict[str, Any]:
    """An image -> image_url part (PNG data URL); audio (music) -> output_audio part."""
    if rendered.format == "png":
        return {"type": "image_url", "image_url": {"url": data_url("image/png", rendered.data)}}
    return {"type": "output_audio", "output_audio": {"data": b64(rendered.data), "format": rendered.format,
                                                     "sample_rate": rendered.sample_rate,
                                                     "kind": rendered.modality}}


def chunk(job: Job, model_name: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def usage_chunk(job: Job, model_name: str, result: JobResult) -> dict[str, Any]:
    return {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": model_name,
            "choices": [], "usage": usage(result)}
