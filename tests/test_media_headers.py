"""anygpt.media_headers: format and pixel size from the container header alone."""

import io

import pytest
from PIL import Image

from anygpt.media_headers import HeaderError, ImageHeader, image_header, sniff_image_format


def encoded(fmt, size=(37, 21), mode="RGB", color=(200, 30, 60), **kw):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, kw", [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("GIF", {}),
                                     ("WEBP", {"lossless": False}), ("WEBP", {"lossless": True}), ("BMP", {})])
def test_header_gives_format_and_size(fmt, kw):
    data = encoded(fmt, **kw)
    assert sniff_image_format(data) == fmt
    assert image_header(data) == ImageHeader(fmt, 37, 21)
    assert image_header(data).pixels == 37 * 21


def test_webp_with_alpha_reads_its_vp8x_chunk():
    data = encoded("WEBP", mode="RGBA", size=(300, 5), color=(200, 30, 60, 128))
    assert data[12:16] == b"VP8X"
    assert image_header(data) == ImageHeader("WEBP", 300, 5)


def test_ico_gives_its_largest_entry():
    data = encoded("ICO", size=(256, 256), sizes=[(16, 16), (48, 48), (256, 256)])
    assert image_header(data) == ImageHeader("ICO", 256, 256)


@pytest.mark.parametrize("fmt, kw, keep", [("PNG", {}, 20), ("JPEG", {}, 4), ("GIF", {}, 8),
                                           ("WEBP", {"lossless": True}, 22), ("BMP", {}, 12)])
def test_cut_header_raises_header_error(fmt, kw, keep):
    data = encoded(fmt, **kw)
    with pytest.raises(HeaderError, match=f"its {fmt} header is cut short"):
        image_header(data[:keep])


def test_broken_headers_are_errors():
    png = bytearray(encoded("PNG"))
    png[12:16] = b"IDAT"
    with pytest.raises(HeaderError, match="IHDR"):
        image_header(bytes(png))
    zero_gif = b"GIF89a" + b"\x00\x00\x05\x00" + b"\x00" * 10
    with pytest.raises(HeaderError, match="a size of 0x5"):
        image_header(zero_gif)
    with pytest.raises(HeaderError, match="no images"):
        image_header(b"\x00\x00\x01\x00\x00\x00")


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x00\x01\x02\x03" * 8, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_unknown_bytes_give_none(data):
    assert sniff_image_format(data) is None
    assert image_header(data) is None
