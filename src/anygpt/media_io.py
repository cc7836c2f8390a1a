"""Reading and writing media files with clear errors and documented repairs.

Audio: soundfile reads it; stereo is mixed down to mono; another sample rate is resampled
with soxr. Images: Pillow reads it; any mode (RGBA, grayscale, palette) becomes RGB, alpha
composited on white. Writes go to a temporary file that is renamed into place, so a killed
job never leaves a half-written file under the final name.

Limits, checked from the file's header before its samples or pixels are decoded (the repair is
the user's: the message says how):
- audio longer than MAX_AUDIO_SECONDS (120 s) is refused: cut it first
  (`sox in.wav out.wav trim 0 60`); a 10-minute clip would be ~120k music tokens and ~1 GB;
- images of more than MAX_IMAGE_PIXELS (4096 x 4096) are refused: downscale them first
  (`convert in.png -resize 2048x2048 out.png`); every tokenizer reads 224 x 224 or less, and a
  10000 x 10000 PNG takes 3.6 GB to decode;
- a WAV file cut short (its header promises more samples than it holds: a truncated copy, or
  a writer that was killed) is refused, where libsndfile would read the part that is there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from PIL import Image, UnidentifiedImageError

from anygpt.errors import MediaError
from anygpt.files import atomic_path  # noqa: F401  (also re-exported: the one atomic-write helper)


MAX_AUDIO_SECONDS = 120.0
MAX_IMAGE_PIXELS = 4096 * 4096


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")


def probe_audio(path: str | Path, max_seconds: float | None = MAX_AUDIO_SECONDS) -> float:
    """Check an audio file from its header (exists, readable, not cut short, not too long) without
    decoding it; returns its duration in seconds. MediaError naming the file otherwise."""
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaError(f"{path}: cannot read audio ({e}); supported: WAV, FLAC, OGG, MP3, AIFF") from None
    missing = wav_bytes_missing(path)
    if missing:
        raise MediaError(f"{path}: the WAV file is cut short: its header promises {missing} more bytes of samples "
                         "than it holds (a truncated copy, or a writer that was stopped); use a complete file")
    if max_seconds is not None and info.duration > max_seconds:
        raise MediaError(f"{path}: {info.duration:.1f} s of audio is more than the {max_seconds:.0f} s read at once; "
                         f"cut it first, e.g. `sox {path.name} part.wav trim 0 {int(max_seconds) // 2}`")
    return float(info.duration)


def wav_bytes_missing(path: Path) -> int:
    """For a RIFF/WAVE file: how many bytes of its data chunk are missing from the file (0 when
    complete or not a WAV; a streaming writer's placeholder size counts as missing)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        size = path.stat().st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            length = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                return max(0, pos + 8 + length - size)
            pos += 8 + length + (length & 1)
    return 0


def load_audio(path: str | Path, sample_rate: int, *, max_seconds: float | None = MAX_AUDIO_SECONDS) -> torch.Tensor:
    """Read an audio file as mono float32 at `sample_rate`: FloatTensor [1, S] in [-1, 1].

    Repairs: channels are averaged, another rate is resampled (soxr), samples are clipped to
    [-1, 1]. Refused (MediaError): unreadable, empty, cut short, longer than max_seconds."""
    path = Path(path)
    probe_audio(path, max_seconds)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MediaError(
            f"{path}: cannot read audio ({e}); supported: WAV, FLAC, OGG, MP3, AIFF"
        ) from None
    if data.shape[0] == 0:
        raise MediaError(f"{path}: audio has no samples")
    if not np.isfinite(data).all():
        raise MediaError(f"{path}: audio contains NaN or infinite samples")
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


def probe_image(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """Check an image file from its header (exists, readable, not too large) without decoding its
    pixels; returns (width, height). MediaError naming the file otherwise."""
    path = Path(path)
    _check_exists(path)
    side = int((max_pixels or MAX_IMAGE_PIXELS) ** 0.5)
    fix = f"downscale it first, e.g. `convert {path.name} -resize {side // 2}x{side // 2} small.png`"
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError:  # Pillow refuses it at open: over 2 x its own limit
        raise MediaError(f"{path}: over {2 * Image.MAX_IMAGE_PIXELS} pixels is more than the {side} x {side} "
                         f"read at once; {fix}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{path}: cannot read image ({e}); supported: PNG, JPEG, BMP, GIF, WebP, TIFF") from None
    if max_pixels is not None and w * h > max_pixels:
        raise MediaError(f"{path}: {w} x {h} pixels is more than the {side} x {side} read at once; {fix}")
    return w, h


def load_image(path: str | Path, size: tuple[int, int] | None = None, *,
               max_pixels: int | None = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Read an image as RGB FloatTensor [3, H, W] in [0, 1], resized to size=(H, W) if given.

    Transparent pixels are composited on white; resizing uses bicubic filtering. Refused
    (MediaError): unreadable, empty, more than max_pixels pixels.
    """
    path = Path(path)
    probe_image(path, max_pixels)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"{path}: cannot read image ({e}); supported: PNG, JPEG, BMP, GIF, WebP, TIFF") from None
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
