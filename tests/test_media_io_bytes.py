"""media_io reads uploads from their bytes with the same checks as files (issue 26 item 3), and
refuses from the header what would decode to gigabytes (issue 27, root cause 2's containers)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from anygpt.errors import MediaError
from anygpt.media_io import load_audio, load_image, probe_audio, probe_image


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_an_image_from_bytes_equals_the_same_file(tmp_path):
    data = _png(20, 12)
    (tmp_path / "a.png").write_bytes(data)
    assert torch.equal(load_image(data, size=(8, 8)), load_image(tmp_path / "a.png", size=(8, 8)))
    assert probe_image(data) == (20, 12)


def test_audio_from_bytes_equals_the_same_file(tmp_path):
    wav = (0.3 * np.sin(np.arange(8000) / 8.0)).astype(np.float32)
    sf.write(tmp_path / "a.wav", wav, 8000, subtype="PCM_16")
    data = (tmp_path / "a.wav").read_bytes()
    assert torch.equal(load_audio(data, 16000), load_audio(tmp_path / "a.wav", 16000))
    with pytest.raises(MediaError, match=r"^upload\.wav: the WAV file is cut short"):
        load_audio(data[: len(data) // 2], 16000, name="upload.wav")


def test_empty_and_garbage_bytes_are_named():
    with pytest.raises(MediaError, match=r"^attachment: empty \(0 bytes\)"):
        probe_image(b"")
    with pytest.raises(MediaError, match=r"^photo: cannot read image"):
        probe_image(b"not a picture", name="photo")


def test_an_ico_holding_a_huge_image_is_refused_from_its_header():
    buf = io.BytesIO()
    Image.new("RGB", (256, 256)).save(buf, format="ICO", sizes=[(16, 16), (256, 256)])
    assert probe_image(buf.getvalue()) == (256, 256)
    with pytest.raises(MediaError, match=r"256 x 256 pixels is more than"):
        probe_image(buf.getvalue(), max_pixels=100 * 100)


def test_many_channels_at_a_high_rate_are_refused_before_decoding():
    """A small file that would decode to gigabytes: 8 channels at 655 kHz (FLAC of silence)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((655_000 * 2, 8), dtype=np.int16), 655_000, format="FLAC", subtype="PCM_16")
    data = buf.getvalue()
    assert len(data) < 2_000_000
    with pytest.raises(MediaError, match=r"sample rate of 655000 Hz is above"):
        load_audio(data, 16000)
    buf = io.BytesIO()
    sf.write(buf, np.zeros((48000 * 100, 8), dtype=np.int16), 48000, format="FLAC", subtype="PCM_16")
    with pytest.raises(MediaError, match=r"8 channels x 4800000 samples is more than"):
        probe_audio(buf.getvalue())
