"""anygpt.media_io: reading and writing audio and images, with repairs and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from anygpt import media_io
from anygpt.errors import MediaError
from anygpt.media_io import atomic_path, load_audio, load_image, save_audio, save_image


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[int(np.argmax(spec))])


# ----------------------------------------------------------------------------- load_audio
def test_mono_float_wav_passes_through_unchanged(tmp_path):
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 1234).astype(np.float32)
    path = tmp_path / "mono.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    got = load_audio(path, 16000)
    assert got.dtype == torch.float32 and got.shape == (1, 1234)
    assert np.array_equal(got[0].numpy(), x)


def test_pcm16_mono_reads_in_unit_range(tmp_path):
    x = _sine(300, 8000, 0.25, amp=0.8)
    path = tmp_path / "pcm.wav"
    sf.write(path, x, 8000, subtype="PCM_16")
    got = load_audio(str(path), 8000)  # str path accepted too
    assert got.shape == (1, x.size)
    assert np.max(np.abs(got[0].numpy() - x)) < 1.0 / 32768 + 1e-6


def test_stereo_is_mixed_down_to_the_mean(tmp_path):
    rng = np.random.default_rng(1)
    left = rng.uniform(-0.5, 0.5, 800).astype(np.float32)
    right = rng.uniform(-0.5, 0.5, 800).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    got = load_audio(path, 16000)
    assert got.shape == (1, 800)
    np.testing.assert_allclose(got[0].numpy(), (left + right) / 2, atol=1e-7)
    # not just one channel
    assert not np.allclose(got[0].numpy(), left) and not np.allclose(got[0].numpy(), right)


def test_opposite_channels_cancel(tmp_path):
    x = _sine(200, 16000, 0.1)
    path = tmp_path / "cancel.wav"
    sf.write(path, np.stack([x, -x], axis=1), 16000, subtype="FLOAT")
    assert load_audio(path, 16000).abs().max() < 1e-7


@pytest.mark.parametrize("src_sr, dst_sr", [(8000, 16000), (44100, 16000), (24000, 32000)])
def test_other_sample_rate_is_resampled(tmp_path, src_sr, dst_sr):
    seconds, freq = 1.0, 440.0
    path = tmp_path / f"sine{src_sr}.wav"
    sf.write(path, _sine(freq, src_sr, seconds), src_sr, subtype="FLOAT")
    got = load_audio(path, dst_sr)
    assert got.dtype == torch.float32 and got.dim() == 2 and got.shape[0] == 1
    assert abs(got.shape[1] - int(seconds * dst_sr)) <= 1
    # the sine keeps its frequency (bin width 1 Hz for one second) and its amplitude
    assert abs(_peak_hz(got[0].numpy(), dst_sr) - freq) <= 1.0
    mid = got[0, dst_sr // 10: -dst_sr // 10].numpy()
    assert abs(np.max(np.abs(mid)) - 0.5) < 0.02


def test_loaded_audio_stays_in_unit_range(tmp_path):
    """load_audio promises [-1, 1]: a full-scale square wave overshoots when resampled (Gibbs
    ringing) and a float WAV may hold samples beyond full scale; both must come back in range."""
    sr = 8000
    square = np.sign(np.sin(2 * np.pi * 100 * np.arange(sr) / sr)).astype(np.float32)
    path = tmp_path / "square.wav"
    sf.write(path, square, sr, subtype="FLOAT")
    assert load_audio(path, sr).abs().max() <= 1.0  # no resampling: unchanged
    resampled = load_audio(path, 16000)
    assert resampled.shape == (1, 16000)
    assert resampled.abs().max() <= 1.0
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.array([0.5, 1.5, -2.0, 0.0], dtype=np.float32), sr, subtype="FLOAT")
    assert load_audio(loud, sr).abs().max() <= 1.0


def test_resampled_length_scales_with_duration(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _sine(100, 22050, 0.5), 22050, subtype="FLOAT")
    assert abs(load_audio(path, 16000).shape[1] - 8000) <= 1


def _assert_media_error_names(exc_info, path, *words):
    msg = str(exc_info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg.lower(), msg


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(MediaError) as e:
        load_audio(path, 16000)
    _assert_media_error_names(e, path, "empty")


def test_zero_sample_wav_is_refused(tmp_path):
    path = tmp_path / "nosamples.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    assert path.stat().st_size > 0  # a header, but no samples
    with pytest.raises(MediaError) as e:
        load_audio(path, 16000)
    _assert_media_error_names(e, path, "no samples")


@pytest.mark.parametrize("content", [
    b"this is not audio at all" * 10,
    b"RIFF\x24\x00\x00\x00WAVEfmt ",  # truncated header
    bytes(range(256)) * 4,
])
def test_corrupt_bytes_are_refused(tmp_path, content):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(content)
    with pytest.raises(MediaError) as e:
        load_audio(path, 16000)
    _assert_media_error_names(e, path, "cannot read audio")


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "nope" / "missing.wav"
    with pytest.raises(MediaError) as e:
        load_audio(path, 16000)
    _assert_media_error_names(e, path, "not found")


def test_folder_is_refused(tmp_path):
    folder = tmp_path / "a_folder.wav"
    folder.mkdir()
    with pytest.raises(MediaError) as e:
        load_audio(folder, 16000)
    _assert_media_error_names(e, folder, "folder")


def test_media_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        load_audio(tmp_path / "missing.wav", 16000)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(tmp_path, bad):
    x = _sine(100, 16000, 0.05)
    x[17] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(MediaError) as e:
        load_audio(path, 16000)
    _assert_media_error_names(e, path, "nan")


# ----------------------------------------------------------------------------- save_audio
def test_save_audio_round_trip_pcm16(tmp_path):
    x = torch.from_numpy(_sine(500, 16000, 0.2, amp=0.7))
    for wav in (x, x.unsqueeze(0)):
        path = tmp_path / "sub" / "out.wav"  # parent folders are created
        assert save_audio(wav, path, 16000) == path
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, x.numel(), "PCM_16")
        back = load_audio(path, 16000)
        assert torch.max(torch.abs(back[0] - x)) <= 1.0 / 32768 + 1e-6


def test_save_audio_clips_to_unit_range(tmp_path):
    wav = torch.tensor([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 7.0])
    path = save_audio(wav, tmp_path / "clip.wav", 8000)
    back, sr = sf.read(str(path), dtype="float32")
    assert sr == 8000
    expected = np.array([-1.0, -1.0, -0.25, 0.0, 0.5, 1.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(back, expected, atol=1.0 / 16384)
    assert np.all(np.abs(back) <= 1.0)


def test_save_audio_replaces_nan_with_silence(tmp_path):
    wav = torch.tensor([0.5, float("nan"), -0.5])
    back, _ = sf.read(str(save_audio(wav, tmp_path / "nan.wav", 8000)), dtype="float32")
    np.testing.assert_allclose(back, [0.5, 0.0, -0.5], atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 100), (1, 1, 100), (3, 1), ()])
def test_save_audio_shape_errors_name_the_path(tmp_path, shape):
    path = tmp_path / "bad.wav"
    with pytest.raises(MediaError) as e:
        save_audio(torch.zeros(shape), path, 16000)
    assert str(path) in str(e.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    final = tmp_path / "result.wav"

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            assert tmp.parent == final.parent and tmp != final
            tmp.write_bytes(b"half written")
            raise Boom
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    final = tmp_path / "keep.txt"
    final.write_text("old")
    with pytest.raises(KeyboardInterrupt):  # a killed job (BaseException) too
        with atomic_path(final) as tmp:
            tmp.write_text("new but unfinished")
            raise KeyboardInterrupt
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_saved_files_get_ordinary_permissions(tmp_path):
    """Atomic writes must not leave the temporary file's private mode (0600) on the result: a
    saved file gets the mode a plain open() would give it under the current umask."""
    import os

    old = os.umask(0o022)
    try:
        wav = save_audio(torch.zeros(10), tmp_path / "a.wav", 8000)
        png = save_image(torch.zeros(3, 2, 2), tmp_path / "a.png")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    expected = plain.stat().st_mode & 0o777
    assert expected == 0o644
    assert oct(wav.stat().st_mode & 0o777) == oct(expected)
    assert oct(png.stat().st_mode & 0o777) == oct(expected)


def test_save_audio_failing_mid_write_is_atomic(tmp_path, monkeypatch):
    real_write = sf.write

    def half_write(file, data, samplerate, **kw):
        real_write(file, data[: len(data) // 2], samplerate, **kw)  # something lands on disk...
        raise RuntimeError("disk full")  # ...then the write fails

    monkeypatch.setattr(media_io.sf, "write", half_write)
    final = tmp_path / "speech.wav"
    with pytest.raises(RuntimeError, match="disk full"):
        save_audio(torch.zeros(1000), final, 16000)
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- load_image
def _px(img: torch.Tensor, y: int, x: int) -> list[float]:
    return [round(float(v) * 255) for v in img[:, y, x]]


def test_rgb_image_loads_exactly(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(arr, "RGB").save(path)
    img = load_image(path)
    assert img.dtype == torch.float32 and img.shape == (3, 5, 7)
    assert torch.equal((img * 255).round().byte().permute(1, 2, 0), torch.from_numpy(arr))


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 3, 4), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0, 0)      # fully transparent red -> white
    arr[0, 1] = (0, 0, 255, 255)    # opaque blue stays blue
    arr[0, 2] = (0, 0, 0, 128)      # half-transparent black -> mid grey
    arr[1, :] = (10, 200, 30, 255)
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(path)
    img = load_image(path)
    assert img.shape == (3, 2, 3)
    assert _px(img, 0, 0) == [255, 255, 255]
    assert _px(img, 0, 1) == [0, 0, 255]
    assert all(abs(v - 127) <= 1 for v in _px(img, 0, 2))
    assert _px(img, 1, 2) == [10, 200, 30]


def test_la_is_composited_on_white(tmp_path):
    arr = np.array([[[0, 0], [0, 255], [100, 255]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(arr, "LA").save(path)
    img = load_image(path)
    assert _px(img, 0, 0) == [255, 255, 255]
    assert _px(img, 0, 1) == [0, 0, 0]
    assert _px(img, 0, 2) == [100, 100, 100]


def test_grayscale_becomes_three_equal_channels(tmp_path):
    arr = np.array([[0, 100, 255], [7, 77, 177]], dtype=np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(arr, "L").save(path)
    img = load_image(path)
    assert img.shape == (3, 2, 3)
    for c in range(3):
        assert torch.equal((img[c] * 255).round().byte(), torch.from_numpy(arr))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    """A 16-bit grayscale PNG (Pillow mode I;16) keeps its grey levels: value v becomes v / 65535."""
    arr = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 .. 65535 in 16 steps
    path = tmp_path / "gray16.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    img = load_image(path)
    assert img.shape == (3, 4, 4)
    expected = torch.from_numpy(arr.astype(np.float32) / 65535)
    for c in range(3):
        assert torch.allclose(img[c], expected, atol=1 / 255 + 1e-6), img[c]


def _palette_image(transparent_index: int | None) -> Image.Image:
    im = Image.new("P", (3, 1))
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    im.putpalette(palette)
    im.putdata([0, 1, 2])
    if transparent_index is not None:
        im.info["transparency"] = transparent_index
    return im


def test_palette_without_transparency(tmp_path):
    path = tmp_path / "pal.png"
    _palette_image(None).save(path)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" not in check.info
    img = load_image(path)
    assert [_px(img, 0, x) for x in range(3)] == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency_is_composited_on_white(tmp_path, suffix):
    path = tmp_path / f"paltrans{suffix}"
    im = _palette_image(1)
    im.save(path, transparency=1)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    img = load_image(path)
    assert [_px(img, 0, x) for x in range(3)] == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


def test_resize_to_size_height_width(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 20), (30, 60, 90)).save(path)  # W=40, H=20
    img = load_image(path, size=(10, 30))  # (H, W)
    assert img.shape == (3, 10, 30)
    assert torch.allclose(img, torch.tensor([30, 60, 90]).view(3, 1, 1) / 255.0, atol=1 / 255)
    same = load_image(path, size=(20, 40))
    assert same.shape == (3, 20, 40)


def test_resize_keeps_a_left_right_split(tmp_path):
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[:, 8:] = 255
    path = tmp_path / "split.png"
    Image.fromarray(arr).save(path)
    img = load_image(path, size=(8, 4))
    assert img.shape == (3, 8, 4)
    assert img[:, :, 0].max() < 0.1 and img[:, :, -1].min() > 0.9


@pytest.mark.parametrize("name, content", [
    ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),
    ("text.jpg", b"hello, I am not a picture\n" * 5),
])
def test_corrupt_image_is_refused_naming_it(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MediaError) as e:
        load_image(path)
    assert str(path) in str(e.value) and "cannot read image" in str(e.value)


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_image_is_refused_naming_it(tmp_path, fmt, suffix):
    arr = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full{suffix}"
    Image.fromarray(arr).save(full, format=fmt)
    path = tmp_path / f"half{suffix}"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as e:
        load_image(path)
    _assert_media_error_names(e, path, "truncated")


def test_missing_empty_and_folder_images_are_refused(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    folder = tmp_path / "dir.png"
    folder.mkdir()
    for path, word in [(tmp_path / "missing.png", "not found"), (empty, "empty"), (folder, "folder")]:
        with pytest.raises(MediaError) as e:
            load_image(path)
        _assert_media_error_names(e, path, word)


# ----------------------------------------------------------------------------- save_image
def test_save_image_round_trip_png(tmp_path):
    arr = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 9, 6), dtype=np.uint8))
    img = arr.float() / 255
    path = tmp_path / "deep" / "out.png"
    assert save_image(img, path) == path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (6, 9)
    back = load_image(path)
    assert torch.equal((back * 255).round().byte(), arr)
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]


def test_save_image_clamps_and_uses_the_suffix_format(tmp_path):
    img = torch.full((3, 4, 4), 0.5)
    img[0] = 2.0
    img[1] = -1.0
    path = save_image(img, tmp_path / "pic.jpg")
    with Image.open(path) as im:
        assert im.format == "JPEG"
    back = load_image(path)
    assert back[0].min() > 0.95 and back[1].max() < 0.05 and abs(float(back[2].mean()) - 0.5) < 0.03
    bmp = save_image(torch.zeros(3, 2, 2), tmp_path / "pic.bmp")
    with Image.open(bmp) as im:
        assert im.format == "BMP"


@pytest.mark.parametrize("shape", [(4, 5, 5), (5, 5), (1, 3, 5, 5)])
def test_save_image_shape_errors(tmp_path, shape):
    path = tmp_path / "bad.png"
    with pytest.raises(MediaError) as e:
        save_image(torch.zeros(shape), path)
    assert str(path) in str(e.value)
    assert not path.exists()


def test_read_image_gives_rgb_on_white_and_load_image_its_floats(tmp_path):
    rgba = Image.new("RGBA", (6, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "a.png")
    im = media_io.read_image(tmp_path / "a.png")
    assert im.mode == "RGB" and im.size == (6, 4)
    assert im.getpixel((0, 0)) == (0, 0, 255) and im.getpixel((1, 0)) == (255, 255, 255)
    t = load_image(tmp_path / "a.png")
    assert t.shape == (3, 4, 6) and torch.equal(t, torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(MediaError, match="b.png"):
        media_io.read_image(tmp_path / "b.png")
