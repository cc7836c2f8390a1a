"""What an image file is and how big it decodes, read from its container header only, before any
decoder sees it: its format and pixel size (an audio file's facts come from libsndfile's header
reading). anygpt.media_io refuses a file over a limit from these facts (the server
answers 413) without giving a single byte to Pillow's decoder, so a small file that decodes
huge (a 20000 px PNG, an ICO that holds a 12000 px PNG) costs nothing.

Images: PNG (IHDR), JPEG (the SOF segment), GIF (logical screen), WebP (VP8 / VP8L / VP8X),
BMP (DIB header) and ICO/CUR (its largest entry, a PNG inside read by its own IHDR)."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageHeader:
    format: str  # as Pillow names it: "PNG", "JPEG", "GIF", "WEBP", "BMP", "ICO"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


class HeaderError(ValueError):
    """The bytes start like a known format but its header is cut or inconsistent."""


def sniff_image_format(data: bytes) -> str | None:
    """The image format the leading magic bytes name, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
        return "ICO"
    return None


def image_header(data: bytes) -> ImageHeader | None:
    """The format and size an image file declares -> ImageHeader; None when the magic bytes
    name no format read here; HeaderError when they do but the header is cut or broken."""
    fmt = sniff_image_format(data)
    if fmt is None:
        return None
    try:
        w, h = _READERS[fmt](data)
    except (struct.error, IndexError) as e:
        raise HeaderError(f"its {fmt} header is cut short ({e})") from None
    if w <= 0 or h <= 0:
        raise HeaderError(f"its {fmt} header gives a size of {w}x{h}")
    return ImageHeader(fmt, w, h)


def _png(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise HeaderError("a PNG must start with its IHDR chunk")
    return struct.unpack(">II", data[16:24])


# JPEG start-of-frame markers (every SOFn but DHT C4, JPG C8 and DAC CC): they hold the size
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise HeaderError(f"a JPEG segment does not start with 0xFF at byte {i}")
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        marker = data[i]
        i += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[i:i + 2])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            return w, h
        if length < 2:
            raise HeaderError(f"a JPEG segment length of {length}")
        i += length
    raise HeaderError("a JPEG without a frame header (SOF)")


def _gif(data: bytes) -> tuple[int, int]:
    return struct.unpack("<HH", data[6:10])


def _webp(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise HeaderError("a VP8L chunk without its signature byte")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("a VP8 chunk without its start code")
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise HeaderError(f"an unknown WebP chunk {chunk!r}")


def _bmp(data: bytes) -> tuple[int, int]:
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return w, abs(h)  # a negative height: top-down rows


def _ico(data: bytes) -> tuple[int, int]:
    """The largest entry's size: an entry that is a PNG is read by its own IHDR (the directory's
    one-byte size fields say 0 for anything of 256 px or more)."""
    (count,) = struct.unpack("<H", data[4:6])
    if count == 0:
        raise HeaderError("an icon file with no images")
    best = (0, 0)
    for n in range(count):
        entry = data[6 + 16 * n: 22 + 16 * n]
        if len(entry) < 16:
            raise HeaderError(f"icon directory entry {n} is cut short")
        w, h = entry[0] or 256, entry[1] or 256
        size, offset = struct.unpack("<II", entry[8:16])
        inner = data[offset: offset + min(size, 64)]
        if inner.startswith(b"\x89PNG\r\n\x1a\n"):
            w, h = _png(inner)
        if w * h > best[0] * best[1]:
            best = (w, h)
    return best


_READERS = {"PNG": _png, "JPEG": _jpeg, "GIF": _gif, "WEBP": _webp, "BMP": _bmp, "ICO": _ico}
