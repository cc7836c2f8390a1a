"""The request body of POST /v1/chat/completions: OpenAI's fields plus a few documented
extensions (docs/serve.md). Content parts stay plain dicts here: anygpt.serve.jobs reads them
one by one so that each error names its exact place (`messages[1].content[0].image_url.url`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    """Fields a client may send that this server does not use are ignored (as OpenAI-compatible
    servers do), so stock clients work unchanged."""

    model_config = ConfigDict(extra="ignore")


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None  # an earlier reply's audio, by {"id": ...}
    name: str | None = None


class VoicePrompt(_Lenient):
    """A voice to clone, sent in the request (extension): ~3 s of speech, base64."""

    data: str
    format: str = "wav"


class AudioOptions(_Lenient):
    voice: str | VoicePrompt = "default"
    format: str = "wav"


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatRequest(_Lenient):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    modalities: list[str] | None = None
    audio: AudioOptions | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    # extensions
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    force_modality: str | None = None


def param_of(loc: tuple) -> str:
    """pydantic's error location ('body', 'messages', 0, 'role') -> 'messages[0].role'."""
    out = ""
    for item in loc:
        if item == "body" and not out:
            continue
        if isinstance(item, int):
            out += f"[{item}]"
        elif str(item) in ("str", "list[dict[str,any]]", "VoicePrompt") or str(item).startswith(("list[", "function")):
            continue  # pydantic names the union member it tried; the client did not write it
        else:
            out += ("." if out else "") + str(item)
    return out or "body"
