"""Media in requests and replies, all in memory: base64 and data URLs -> tensors (read by
anygpt.media_io from the bytes, with the checks the command line has: the container header
first, against the server's limits; never a path: the server reads and writes no file a request
names), and the reply's media -> WAV / PCM16 / FLAC / PNG bytes.

Errors are APIErrors naming the field: 400 for bad base64, an unsupported type or corrupt
media; 413 for media over a limit (media_io's MediaTooLarge)."""

from __future__ import annotations

import base64
import binascii
import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from anygpt import media_io
from anygpt.errors import MediaError, MediaTooLarge
from anygpt.serve.errors import bad_request, too_large

# MIME type of an image data URL -> the format its bytes must have (as Pillow names it)
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP",
               "image/bmp": "BMP"}
# input_audio.format: the containers a request may send (media_io.AUDIO_FORMATS's keys)
AUDIO_INPUT_FORMATS = ("wav", "flac", "ogg", "mp3")
# audio.format of a reply: what message.audio.data holds
AUDIO_OUTPUT_FORMATS = ("wav", "pcm16", "flac")


# Decoding media is CPU and memory work bounded per item; one decode at a time per process
# bounds it for the whole server too (the request threads would only share the cores anyway).
DECODING = threading.Lock()


@dataclass(frozen=True)
class MediaLimits:
    """Per attachment: decoded bytes, image pixels, audio seconds, and the audio header's sample
    rate and channels (what bounds its decoded size with the seconds). Per request: the pixels of
    all its images and the seconds of all its audio, so that many attachments under the
    per-item limits cannot keep the server decoding for minutes."""

    max_bytes: int = 16 << 20
    max_pixels: int = 4096 * 4096
    max_audio_seconds: float = 120.0
    max_sample_rate: int = 192_000
    max_channels: int = 8
    max_request_pixels: int = 2 * 4096 * 4096
    max_request_audio_seconds: float = 240.0


def b64_bytes(text: object, param: str, limits: MediaLimits) -> bytes:
    """Strict base64 (no data: prefix) -> bytes; 413 before decoding if it would be too large."""
    if not isinstance(text, str) or not text:
        raise bad_request(param, "expected a non-empty base64 string")
    if len(text) // 4 * 3 > limits.max_bytes:
        raise too_large(param, f"attachment of about {len(text) // 4 * 3} bytes is over the limit of "
                               f"{limits.max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(param, "not valid base64", code="invalid_base64") from None


def split_data_url(url: object, param: str, limits: MediaLimits) -> tuple[str, bytes]:
    """'data:image/png;base64,...' -> ('image/png', bytes). Any other URL is refused: the server
    fetches nothing and reads no file."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise bad_request(param, "only data: URLs with base64 content are accepted (the server fetches "
                                 "no URL and reads no file)", code="unsupported_url")
    header, comma, payload = url[5:].partition(",")
    fields = header.split(";")
    if not comma or "base64" not in fields[1:]:
        raise bad_request(param, "a data: URL must be 'data:MIME;base64,DATA'", code="invalid_data_url")
    return fields[0].strip().lower(), b64_bytes(payload, param, limits)


@contextmanager
def _answered(param: str):
    """media_io's errors as the field's 400, or 413 for a limit; its message names `param`."""
    try:
        yield
    except MediaError as e:
        problem = str(e).removeprefix(f"{param}: ")
        raise (too_large(param, problem) if isinstance(e, MediaTooLarge)
               else bad_request(param, problem, code="invalid_media")) from None


def image_size(data: bytes, mime: str, param: str, limits: MediaLimits) -> tuple[int, int]:
    """(width, height) an image data URL's bytes declare, checked against its MIME type and the
    pixel limit from the header alone (400 / 413)."""
    with _answered(param):
        return media_io.probe_image(data, limits.max_pixels, name=param, format=_image_format(mime, param))


def image_from_bytes(data: bytes, mime: str, param: str, limits: MediaLimits, size: int | None) -> torch.Tensor:
    """An image data URL's MIME type and bytes -> FloatTensor [3, H, W] in [0, 1] (padded square
    and resized to `size` when given, as the image tokenizer does)."""
    fmt = _image_format(mime, param)
    with _answered(param), DECODING:
        img = media_io.load_image(data, max_pixels=limits.max_pixels, name=param, format=fmt, shrink_to=size)
    if size is not None:
        from anygpt.modalities.image_tokenizers import fit_square

        img = fit_square(img, size)[0]
    return img


def _image_format(mime: str, param: str) -> str:
    if mime not in IMAGE_TYPES:
        raise bad_request(param, f"unsupported MIME type {mime!r} for an image; use one of "
                                 f"{', '.join(IMAGE_TYPES)}", code="unsupported_media_type")
    return IMAGE_TYPES[mime]


def check_audio_format(fmt: object, param: str) -> None:
    if not isinstance(fmt, str) or fmt not in AUDIO_INPUT_FORMATS:
        raise bad_request(param, f"unsupported audio format {fmt!r}; use one of {', '.join(AUDIO_INPUT_FORMATS)}",
                          code="unsupported_media_type")


def _audio_limits(limits: MediaLimits) -> dict:
    return dict(max_seconds=limits.max_audio_seconds, max_sample_rate=limits.max_sample_rate,
                max_channels=limits.max_channels)


def audio_seconds(data: bytes, fmt: str, param: str, limits: MediaLimits) -> float:
    """The seconds an audio file's header declares, checked (format, sample rate, channels,
    seconds) before a sample is decoded (400 / 413)."""
    with _answered(param):
        return media_io.probe_audio(data, name=param, format=fmt, **_audio_limits(limits))


def audio_from_bytes(data: bytes, fmt: str, param: str, limits: MediaLimits, tokenizer) -> torch.Tensor:
    """An audio file's bytes, of format `fmt` -> FloatTensor [1, S] in [-1, 1], mono at the
    tokenizer's sample rate, as the command line reads a file (media_io.load_audio)."""
    with _answered(param), DECODING:
        return media_io.load_audio(data, tokenizer.sample_rate, name=param, format=fmt, **_audio_limits(limits))


# ----------------------------------------------------------------------------- replies
def audio_bytes(samples: torch.Tensor, sample_rate: int, fmt: str) -> bytes:
    """samples FloatTensor [S] or [1, S] in [-1, 1] -> a WAV or FLAC file (16-bit), or raw
    little-endian PCM16 ('pcm16')."""
    x = torch.nan_to_num(samples.detach().float().cpu().reshape(-1)).clamp(-1.0, 1.0).numpy()
    if fmt == "pcm16":
        return (np.round(x * 32767.0).astype("<i2")).tobytes()
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, subtype="PCM_16", format={"wav": "WAV", "flac": "FLAC"}[fmt])
    return buf.getvalue()


def png_bytes(img: torch.Tensor) -> bytes:
    """img FloatTensor [3, H, W] in [0, 1] -> PNG file bytes."""
    arr = (img.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{b64(data)}"
