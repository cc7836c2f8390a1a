"""The request body of POST /v1/chat/completions: OpenAI's fields plus a few documented
extensions (docs/serve.md). Content parts stay plain dicts here: anygpt.serve.jobs reads them
one by one so that each error names its exact place (`messages[1].content[0].image_url.url`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# the ranges of the numbers a request holds: every integer fits a signed 64-bit value with room
# to add the pass count (seeds) and every float is finite (JSON's NaN and Infinity are refused)
MAX_SEED = 2**63 - 1 - 64
MAX_INT = 2**31 - 1


class _Lenient(BaseModel):
    """Fields a client may send that this server does not use are ignored (as OpenAI-compatible
    servers do), so stock clients work unchanged."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


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
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_INT)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    n: int = 1
    # extensions
    top_k: int | None = Field(default=None, ge=0, le=MAX_INT)
    repetition_penalty: float | None = Field(default=None, gt=0, le=100)
    force_modality: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_is_unicode(cls, data: Any) -> Any:
        """Refuse a string that is no Unicode text (a lone surrogate escape such as "\\ud800"
        is valid JSON, but no UTF-8 encodes it), naming where it is."""
        where = _lone_surrogate(data, "")
        if where is not None:
            raise ValueError(f"{where or 'body'}: a string holds a lone surrogate escape (\\uD800-\\uDFFF "
                             "without its pair); send Unicode text")
        return data


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The place of the first string (key or value) in a JSON value that UTF-8 cannot encode
    (a walk with its own stack: as deep as the JSON parser allowed, never a RecursionError)."""
    stack = [(where, value)]
    while stack:
        name, v = stack.pop()
        if isinstance(v, str):
            if not v.isascii() and not _encodes(v):
                return name
        elif isinstance(v, list):
            stack.extend((f"{name}[{i}]", x) for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, dict):
            children = []
            for key, x in v.items():
                child = f"{name}.{key}" if name else str(key)
                if isinstance(key, str) and not key.isascii() and not _encodes(key):
                    return child.encode("utf-8", "backslashreplace").decode("ascii")
                children.append((child, x))
            stack.extend(reversed(children))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
