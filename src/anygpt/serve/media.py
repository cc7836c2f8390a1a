"""Media in requests and replies, all in memory: base64 and data URLs -> tensors (checked
against limits, never a path: the server reads and writes no file a request names), and the
reply's media -> WAV / PCM16 / FLAC / PNG bytes.

Errors are APIErrors naming the field: 400 for bad base64, an unsupported type or corrupt
media; 413 for media over a limit."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from anygpt.media_io import to_rgb
from anygpt.serve.errors import bad_request, too_large

# MIME type of an image data URL -> the format its bytes must have (as Pillow names it)
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP",
               "image/bmp": "BMP"}
# input_audio.format -> libsndfile's format name
AUDIO_INPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
# audio.format of a reply: what message.audio.data holds
AUDIO_OUTPUT_FORMATS = ("wav", "pcm16", "flac")


@dataclass(frozen=True)
class MediaLimits:
    """Per attachment: decoded bytes, image pixels, audio seconds."""

    max_bytes: int = 16 << 20
    max_pixels: int = 4096 * 4096
    max_audio_seconds: float = 120.0


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


def image_from_bytes(data: bytes, mime: str, param: str, limits: MediaLimits, size: int | None) -> torch.Tensor:
    """An image data URL's MIME type and bytes -> FloatTensor [3, H, W] in [0, 1] (padded square
    and resized to `size` when given, as the image tokenizer does)."""
    if mime not in IMAGE_TYPES:
        raise bad_request(param, f"unsupported MIME type {mime!r} for an image; use one of "
                                 f"{', '.join(IMAGE_TYPES)}", code="unsupported_media_type")
    found = _image_format(data)
    if found != IMAGE_TYPES[mime]:
        raise bad_request(param, f"the data is not a {IMAGE_TYPES[mime]} image"
                                 + (f" (it looks like {found})" if found else ""), code="invalid_media")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > limits.max_pixels:  # before a single pixel is decoded
                raise too_large(param, f"image of {w}x{h} pixels is larger than the limit of {limits.max_pixels} pixels")
            im.load()
            rgb = to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise bad_request(param, f"cannot read image ({e})", code="invalid_media") from None
    img = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    if size is not None:
        from anygpt.modalities.image_tokenizers import fit_square

        img = fit_square(img, size)[0]
    return img


def check_audio_format(fmt: object, param: str) -> None:
    if fmt not in AUDIO_INPUT_FORMATS:
        raise bad_request(param, f"unsupported audio format {fmt!r}; use one of {', '.join(AUDIO_INPUT_FORMATS)}",
                          code="unsupported_media_type")


def audio_from_bytes(data: bytes, fmt: str, param: str, limits: MediaLimits, tokenizer) -> torch.Tensor:
    """An audio file's bytes, of format `fmt` (checked first) -> FloatTensor [1, S] mono at the
    tokenizer's sample rate (mixed down and resampled by its `prepare`)."""
    try:
        info = sf.info(io.BytesIO(data))
        if info.format != AUDIO_INPUT_FORMATS[fmt]:
            raise bad_request(param, f"the data is not {fmt} audio (it is {info.format})", code="invalid_media")
        if info.samplerate and info.frames / info.samplerate > limits.max_audio_seconds:
            raise too_large(param, f"audio of {info.frames / info.samplerate:.1f} s is longer than the limit of "
                                   f"{limits.max_audio_seconds:g} s")
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise bad_request(param, f"cannot read audio ({e})", code="invalid_media") from None
    if samples.shape[0] == 0 or not np.isfinite(samples).all():
        raise bad_request(param, "audio has no samples, or NaN / infinite ones", code="invalid_media")
    wav = tokenizer.prepare(torch.from_numpy(samples.T.copy())[None], sample_rate=sr)[0]  # [1, S']
    return wav.clamp(-1.0, 1.0)


def _image_format(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is "not an image"
        return None


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
