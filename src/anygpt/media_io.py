"""Reading and writing media files with clear errors and documented repairs.

Audio: soundfile reads it; stereo is mixed down to mono; another sample rate is resampled
with soxr. Images: Pillow reads it; any mode (RGBA, grayscale, palette) becomes RGB, alpha
composited on white. Writes go to a temporary file that is renamed into place, so a killed
job never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr
import torch
from PIL import Image, UnidentifiedImageError

from anygpt.errors import MediaError


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read an audio file as mono float32 at `sample_rate`: FloatTensor [1, S] in [-1, 1].

    Repairs: channels are averaged, another rate is resampled (soxr), samples are clipped to
    [-1, 1]."""
    path = Path(path)
    _check_exists(path)
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


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image as RGB FloatTensor [3, H, W] in [0, 1], resized to size=(H, W) if given.

    Transparent pixels are composited on white; resizing uses bicubic filtering.
    """
    path = Path(path)
    _check_exists(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
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
