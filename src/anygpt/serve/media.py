"""Media in requests and replies, all in memory: base64 and data URLs -> tensors (checked
against limits, never a path: the server reads and writes no file a request names), and the
reply's media -> WAV / PCM16 / FLAC / PNG bytes.

Errors are APIErrors naming the field: 400 for bad base64, an unsupported type or corrupt
media; 413 for media over a limit."""

from __future__ import annotations

import base64
import binascii
import io
import threading
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from anygpt.media_io import to_rgb
from anygpt.serve.errors import bad_request, too_large
from anygpt.serve.media_headers import HeaderError, ImageHeader, image_header

# MIME type of an image data URL -> the format its bytes must have (as Pillow names it)
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP",
               "image/bmp": "BMP"}
# input_audio.format -> libsndfile's format name
AUDIO_INPUT_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
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


def image_from_bytes(data: bytes, mime: str, param: str, limits: MediaLimits, size: int | None) -> torch.Tensor:
    """An image data URL's MIME type and bytes -> FloatTensor [3, H, W] in [0, 1] (padded square
    and resized to `size` when given, as the image tokenizer does). The container header is read
    first (anygpt.serve.media_headers): a wrong format is a 400 and a size over the limit a 413
    before Pillow decodes anything."""
    if mime not in IMAGE_TYPES:
        raise bad_request(param, f"unsupported MIME type {mime!r} for an image; use one of "
                                 f"{', '.join(IMAGE_TYPES)}", code="unsupported_media_type")
    header = check_image_header(data, mime, param, limits)
    try:
        with DECODING, Image.open(io.BytesIO(data), formats=[header.format]) as im:
            w, h = im.size
            if w * h > limits.max_pixels:  # Pillow read another size than the header says
                raise too_large(param, f"image of {w}x{h} pixels is larger than the limit of {limits.max_pixels} pixels")
            if size is not None and im.format == "JPEG":
                im.draft("RGB", (size, size))  # decode at a fraction of the size when the codec can
            im.load()
            if size is not None and max(im.size) > 4 * size:
                # shrink in 8-bit before the float copy: a 4096 px picture is 200 MB as floats
                im = im.reduce(max(im.size) // (4 * size))
            rgb = to_rgb(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise bad_request(param, f"cannot read image ({e})", code="invalid_media") from None
    img = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    if size is not None:
        from anygpt.modalities.image_tokenizers import fit_square

        img = fit_square(img, size)[0]
    return img


def check_image_header(data: bytes, mime: str, param: str, limits: MediaLimits) -> ImageHeader:
    """The image's header, checked against its MIME type and the pixel limit (400 / 413)."""
    want = IMAGE_TYPES[mime]
    try:
        header = image_header(data)
    except HeaderError as e:
        raise bad_request(param, f"cannot read image: {e}", code="invalid_media") from None
    if header is None or header.format != want:
        found = header.format if header is not None else None
        raise bad_request(param, f"the data is not a {want} image" + (f" (it looks like {found})" if found else ""),
                          code="invalid_media")
    if header.pixels > limits.max_pixels:
        raise too_large(param, f"image of {header.width}x{header.height} pixels is larger than the limit of "
                               f"{limits.max_pixels} pixels")
    return header


def check_audio_format(fmt: object, param: str) -> None:
    if not isinstance(fmt, str) or fmt not in AUDIO_INPUT_FORMATS:
        raise bad_request(param, f"unsupported audio format {fmt!r}; use one of {', '.join(AUDIO_INPUT_FORMATS)}",
                          code="unsupported_media_type")


def audio_from_bytes(data: bytes, fmt: str, param: str, limits: MediaLimits, tokenizer) -> torch.Tensor:
    """An audio file's bytes, of format `fmt` (checked first) -> FloatTensor [1, S] mono at the
    tokenizer's sample rate (mixed down and resampled by its `prepare`). The header is checked
    (format, sample rate, channels, seconds) before a sample is decoded."""
    try:
        audio_header(data, fmt, param, limits)
        with DECODING:
            samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise bad_request(param, f"cannot read audio ({e})", code="invalid_media") from None
    if samples.shape[0] == 0 or not np.isfinite(samples).all():
        raise bad_request(param, "audio has no samples, or NaN / infinite ones", code="invalid_media")
    with DECODING:
        wav = tokenizer.prepare(torch.from_numpy(samples.T.copy())[None], sample_rate=sr)[0]  # [1, S']
    return wav.clamp(-1.0, 1.0)


def audio_header(data: bytes, fmt: str, param: str, limits: MediaLimits):
    """libsndfile's reading of the container header (no sample decoded) -> its info, checked:
    the format is `fmt`, and sample rate, channels and seconds are within the limits (413)."""
    info = sf.info(io.BytesIO(data))
    if info.format != AUDIO_INPUT_FORMATS[fmt]:
        raise bad_request(param, f"the data is not {fmt} audio (it is {info.format})", code="invalid_media")
    if not 0 < info.samplerate <= limits.max_sample_rate:
        raise too_large(param, f"audio at {info.samplerate} Hz is over the limit of {limits.max_sample_rate} Hz")
    if not 0 < info.channels <= limits.max_channels:
        raise too_large(param, f"audio with {info.channels} channels is over the limit of {limits.max_channels}")
    if info.frames / info.samplerate > limits.max_audio_seconds:
        raise too_large(param, f"audio of {info.frames / info.samplerate:.1f} s is longer than the limit of "
                               f"{limits.max_audio_seconds:g} s")
    return info


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
