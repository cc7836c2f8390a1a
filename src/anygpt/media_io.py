"""Reading and writing media files with clear errors and documented repairs.

Every reader takes a path or the file's bytes (an upload, read without touching the disk; `name=`
names it in messages), so the server and the command line share one set of checks.

Audio: soundfile reads it; stereo is mixed down to mono; another sample rate is resampled
with soxr. Images: Pillow reads it; any mode (RGBA, grayscale, palette) becomes RGB, alpha
composited on white. Writes go to a temporary file that is renamed into place, so a killed
job never leaves a half-written file under the final name.

Limits, checked from the file's header before its samples or pixels are decoded (the repair is
the user's: the message says how):
- audio longer than MAX_AUDIO_SECONDS (120 s) is refused: cut it first
  (`sox in.wav out.wav trim 0 60`); a 10-minute clip would be ~120k music tokens and ~1 GB;
  so is audio of more samples x channels than 120 s of 48 kHz stereo, or a rate above 192 kHz
  (a small FLAC of many channels at a high rate would decode to gigabytes);
- images of more than MAX_IMAGE_PIXELS (4096 x 4096), or a container (ICO) holding one, are
  refused: downscale them first
  (`convert in.png -resize 2048x2048 out.png`); every tokenizer reads 224 x 224 or less, and a
  10000 x 10000 PNG takes 3.6 GB to decode;
- a WAV file cut short (its header promises more samples than it holds: a truncated copy, or
  a writer that was killed) is refused, where libsndfile would read the part that is there.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from PIL import Image, UnidentifiedImageError

from anygpt.errors import MediaError, MediaTooLarge
from anygpt.files import atomic_path  # noqa: F401  (also re-exported: the one atomic-write helper)
from anygpt.media_headers import HeaderError, image_header


MAX_AUDIO_SECONDS = 120.0
MAX_IMAGE_PIXELS = 4096 * 4096


MAX_SAMPLE_RATE = 192000  # Hz; above any real recording
MAX_AUDIO_VALUES = int(MAX_AUDIO_SECONDS * 48000 * 2)  # samples x channels decoded at most (~88 MB of float32)
MAX_IMAGE_FILE_BYTES = 256 << 20  # an image file is read whole to check its header first
# the audio containers read, by the names users give them -> libsndfile's names
AUDIO_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3", "aiff": "AIFF"}


def _source(source: str | Path | bytes, name: str | None) -> tuple[str, str | io.BytesIO, int]:
    """A path or bytes -> (the name errors use, what soundfile and Pillow open, its size)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise MediaError(f"{name or 'attachment'}: empty (0 bytes)")
        return name or "attachment", io.BytesIO(data), len(data)
    path = Path(source)
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected a media file")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    return str(name or path), str(path), size


def probe_audio(source: str | Path | bytes, max_seconds: float | None = MAX_AUDIO_SECONDS, *,
                name: str | None = None, format: str | None = None, max_sample_rate: int = MAX_SAMPLE_RATE,
                max_channels: int | None = None) -> float:
    """Check audio (a file, or its bytes) from its header without decoding it: readable, of
    `format` when given (a key of AUDIO_FORMATS), not cut short, and within the limits (seconds,
    sample rate, channels, samples x channels); returns its duration in seconds. MediaError naming
    the file (or `name`) otherwise; MediaTooLarge for a limit."""
    label, handle, size = _source(source, name)
    try:
        info = sf.info(handle)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaError(f"{label}: cannot read audio ({e}); supported: WAV, FLAC, OGG, MP3, AIFF") from None
    if format is not None and info.format != AUDIO_FORMATS[format]:
        raise MediaError(f"{label}: the data is not {format} audio (it is {info.format})")
    missing = _wav_bytes_missing(_reopen(handle), size)
    if missing:
        raise MediaError(f"{label}: the WAV file is cut short: its header promises {missing} more bytes of samples "
                         "than it holds (a truncated copy, or a writer that was stopped); use a complete file")
    if not 0 < info.samplerate <= max_sample_rate:
        raise MediaTooLarge(f"{label}: a sample rate of {info.samplerate} Hz is above the {max_sample_rate} Hz read; "
                            f"resample it first, e.g. `sox in.wav -r 48000 out.wav`")
    if max_channels is not None and not 0 < info.channels <= max_channels:
        raise MediaTooLarge(f"{label}: {info.channels} channels are more than the {max_channels} read; mix it down "
                            "first, e.g. `sox in.wav -c 1 out.wav`")
    if max_seconds is not None and info.duration > max_seconds:
        raise MediaTooLarge(f"{label}: {info.duration:.1f} s of audio is more than the {max_seconds:g} s read at once; "
                            f"cut it first, e.g. `sox in.wav part.wav trim 0 {int(max_seconds) // 2}`")
    if info.frames * info.channels > MAX_AUDIO_VALUES:
        raise MediaTooLarge(f"{label}: {info.channels} channels x {info.frames} samples is more than the "
                            f"{MAX_AUDIO_VALUES} values read at once; mix it down to mono first, e.g. "
                            "`sox in.wav -c 1 out.wav`")
    return float(info.duration)


def _reopen(handle: str | io.BytesIO):
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
        return handle
    return open(handle, "rb")


def _wav_bytes_missing(f, size: int) -> int:
    """For a RIFF/WAVE file (open, binary, `size` bytes): how many bytes of its data chunk are
    missing (0 when complete or not a WAV; a streaming writer's placeholder size counts)."""
    with f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            length = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                return max(0, pos + 8 + length - size)
            pos += 8 + length + (length & 1)
    return 0


def load_audio(source: str | Path | bytes, sample_rate: int, *, max_seconds: float | None = MAX_AUDIO_SECONDS,
               name: str | None = None, format: str | None = None, max_sample_rate: int = MAX_SAMPLE_RATE,
               max_channels: int | None = None) -> torch.Tensor:
    """Read audio (a file, or its bytes) as mono float32 at `sample_rate`: FloatTensor [1, S] in
    [-1, 1].

    Repairs: channels are averaged, another rate is resampled (soxr), samples are clipped to
    [-1, 1]. Refused (MediaError naming the file or `name`): unreadable, empty, cut short, not
    of `format`, NaN or infinite samples; MediaTooLarge over a limit of probe_audio's (checked
    from the header, before decoding)."""
    probe_audio(source, max_seconds, name=name, format=format, max_sample_rate=max_sample_rate,
                max_channels=max_channels)
    label, handle, _ = _source(source, name)
    try:
        data, sr = sf.read(handle, dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaError(
            f"{label}: cannot read audio ({e}); supported: WAV, FLAC, OGG, MP3, AIFF"
        ) from None
    if data.shape[0] == 0:
        raise MediaError(f"{label}: audio has no samples")
    if not np.isfinite(data).all():
        raise MediaError(f"{label}: audio contains NaN or infinite samples")
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    mono = np.clip(mono, -1.0, 1.0)  # float files may exceed full scale; resampling can overshoot
    return torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0)


def save_audio(wav: torch.Tensor, path: str | Path, sample_rate: int) -> Path:
    """Write wav ([S] or [1, S], float in [-1, 1]) as 16-bit PCM WAV, atomically."""
    path = Path(path)
    x = wav.detach().float().cpu()
    if x.dim() == 2:
        if x.shape[0] != 1:
            raise MediaError(f"{path}: save_audio expects mono [1, S], got {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 1:
        raise MediaError(f"{path}: save_audio expects [S] or [1, S], got {tuple(wav.shape)}")
    x = torch.nan_to_num(x).clamp(-1.0, 1.0).numpy()
    with atomic_path(path) as tmp:
        sf.write(str(tmp), x, sample_rate, subtype="PCM_16", format="WAV")
    return path


def probe_image(source: str | Path | bytes, max_pixels: int | None = MAX_IMAGE_PIXELS, *,
                name: str | None = None, format: str | None = None) -> tuple[int, int]:
    """Check an image (a file, or its bytes) from its header without decoding its pixels:
    readable, of `format` when given (as Pillow names it: "PNG", "JPEG", ...), not larger than
    max_pixels; returns (width, height). MediaError naming the file (or `name`) otherwise;
    MediaTooLarge for the size. The formats anygpt.media_headers reads (PNG, JPEG, GIF, WebP,
    BMP, ICO: the PNG inside by its own header) never reach Pillow here; others are measured by
    Pillow's lazy open, a container of several images (a multi-frame TIFF) by its largest."""
    label, handle, _ = _source(source, name)
    data = _image_bytes(handle, label)
    try:
        header = image_header(data)
    except HeaderError as e:
        raise MediaError(f"{label}: cannot read image: {e}") from None
    if format is not None and (header is None or header.format != format):
        found = f" (it looks like {header.format})" if header is not None else ""
        raise MediaError(f"{label}: the data is not a {format} image{found}")
    if header is not None:
        _check_pixels(label, header.width, header.height, max_pixels)
        return header.width, header.height
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            sizes = [tuple(s) for s in (im.info.get("sizes") or ())]
    except Image.DecompressionBombError:  # Pillow refuses it at open: over 2 x its own limit
        raise MediaTooLarge(f"{label}: over {2 * Image.MAX_IMAGE_PIXELS} pixels is more than "
                            f"{max_pixels or MAX_IMAGE_PIXELS} read at once; {_downscale_hint(max_pixels)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{label}: cannot read image ({e}); supported: PNG, JPEG, BMP, GIF, WebP, TIFF") from None
    for sw, sh in [(w, h), *sizes]:
        _check_pixels(label, sw, sh, max_pixels)
    return w, h


def _image_bytes(handle: str | io.BytesIO, label: str) -> bytes:
    if isinstance(handle, io.BytesIO):
        return handle.getvalue()
    size = Path(handle).stat().st_size
    if size > MAX_IMAGE_FILE_BYTES:
        raise MediaTooLarge(f"{label}: an image file of {size >> 20} MB is more than the {MAX_IMAGE_FILE_BYTES >> 20} MB "
                            "read; save it smaller first (PNG or JPEG)")
    return Path(handle).read_bytes()


def _downscale_hint(max_pixels: int | None) -> str:
    side = int((max_pixels or MAX_IMAGE_PIXELS) ** 0.5) // 2
    return f"downscale it first, e.g. `convert in.png -resize {side}x{side} small.png`"


def _check_pixels(label: str, w: int, h: int, max_pixels: int | None) -> None:
    if max_pixels is not None and w * h > max_pixels:
        raise MediaTooLarge(f"{label}: {w} x {h} pixels is more than the {max_pixels} pixels read at once; "
                            f"{_downscale_hint(max_pixels)}")


def read_image(source: str | Path | bytes, *, max_pixels: int | None = MAX_IMAGE_PIXELS, name: str | None = None,
               format: str | None = None, shrink_to: int | None = None) -> Image.Image:
    """Read an image (a file, or its bytes) as an RGB PIL image, transparent pixels composited
    on white. shrink_to=N: the caller only needs about N x N pixels, so a JPEG is decoded at a
    fraction of its size when the codec can, and a picture over 4N a side is reduced in 8 bits
    (a 4096 px picture is 200 MB as floats). Refused as probe_image refuses (header first)."""
    label, handle, _ = _source(source, name)
    data = _image_bytes(handle, label)  # read once: the header check and the decode share it
    probe_image(data, max_pixels, name=label, format=format)
    try:
        with Image.open(io.BytesIO(data), formats=[format] if format else None) as im:
            _check_pixels(label, *im.size, max_pixels)  # what Pillow reads, if not what the header said
            if shrink_to is not None and im.format == "JPEG":
                im.draft("RGB", (shrink_to, shrink_to))
            im.load()
            if shrink_to is not None and max(im.size) > 4 * shrink_to:
                im = im.reduce(max(im.size) // (4 * shrink_to))
            return to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, MediaError):
            raise
        raise MediaError(f"{label}: cannot read image ({e}); supported: PNG, JPEG, BMP, GIF, WebP, TIFF") from None


def load_image(source: str | Path | bytes, size: tuple[int, int] | None = None, *,
               max_pixels: int | None = MAX_IMAGE_PIXELS, name: str | None = None, format: str | None = None,
               shrink_to: int | None = None) -> torch.Tensor:
    """Read an image (read_image: the same checks and options) as RGB FloatTensor [3, H, W] in
    [0, 1], resized to size=(H, W) with bicubic filtering if given."""
    rgb = read_image(source, max_pixels=max_pixels, name=name, format=format, shrink_to=shrink_to)
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.BICUBIC)
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; alpha (RGBA, LA, palette transparency) composited on white;
    16-bit and float greyscale scaled to 8 bits (Pillow's convert would clip them)."""
    if im.mode == "RGB":
        return im.copy()
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode != "F" else max(float(arr.max()), 1e-12)
        if im.mode == "I" and arr.max() <= 255:
            top = 255.0
        return Image.fromarray(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def save_image(img: torch.Tensor, path: str | Path) -> Path:
    """Write img (FloatTensor [3, H, W] in [0, 1]) as PNG (or the format of path's suffix), atomically."""
    path = Path(path)
    if img.dim() != 3 or img.shape[0] != 3:
        raise MediaError(f"{path}: save_image expects [3, H, W], got {tuple(img.shape)}")
    arr = (img.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr, "RGB").save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path
