"""Music tokenizers: the released Encodec loader (random weights, HF layout), the compact codec,
the frame-by-frame layout, bad input (the trainer's tests are in tests/train/). Nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from anygpt.errors import CheckpointError, MediaError
from anygpt.layout import TokenLayout
from anygpt.modalities import load_tokenizer, released_specs
from anygpt.modalities.music_tokenizers import RELEASED_CONFIG, chunked_decode, chunked_encode, released_encodec_config
from anygpt.modalities.music_tokenizers import load_compact_music_tokenizer
from anygpt.modalities.specs import RELEASED_MUSIC_SPEC
from anygpt.nn.compact_music_codec import CompactMusicCodec, MusicCodecConfig


def _tone(seconds: float, sr: int, f0: float = 440.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return (0.3 * torch.sin(2 * np.pi * f0 * t) * torch.exp(-t)).reshape(1, 1, -1)


# ---------------------------------------------------------------- released Encodec 32 kHz
@pytest.fixture(scope="module")
def released_dir(tmp_path_factory):
    from transformers import EncodecModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encodec_32khz")
    EncodecModel(released_encodec_config()).save_pretrained(str(folder))  # config.json + model.safetensors
    return folder


def test_released_config_constants(released_dir):
    cfg = json.loads((released_dir / "config.json").read_text())
    for k, v in RELEASED_CONFIG.items():
        assert cfg[k] == v, k
    c = released_encodec_config()
    assert (c.sampling_rate, c.hop_length, c.frame_rate, c.num_quantizers, c.codebook_size) == (32000, 640, 50, 4, 2048)


def test_released_roundtrip_through_release_ids(released_dir):
    tok = load_tokenizer("music", "released", path=released_dir)
    assert tok.token_spec == RELEASED_MUSIC_SPEC
    assert (tok.sample_rate, tok.frame_rate, tok.num_codebooks, tok.codebook_size) == (32000, 50.0, 4, 2048)
    codes = tok.encode(_tone(1.0, 32000))
    assert codes.shape == (1, 4, 50) and codes.dtype == torch.long
    layout = TokenLayout.plan(32000, released_specs())
    ids = layout.codes_to_ids("music", codes[0])
    r = layout["music"]
    assert ids.shape == (200,)
    # frame by frame: token 4t+l is code[l][t] + 2048 l
    assert torch.equal(ids.reshape(50, 4) - r.code_offset, (codes[0] + torch.arange(4)[:, None] * 2048).t())
    back = layout.ids_to_codes("music", ids)
    assert torch.equal(back, codes[0])
    wav = tok.decode(back[None])
    assert wav.shape == (1, 1, 32000) and torch.isfinite(wav).all()


def test_released_missing_folder_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_tokenizer("music", "released", path=tmp_path)
    with pytest.raises(CheckpointError, match="never"):
        load_tokenizer("music", "released")


# ---------------------------------------------------------------- chunking helpers
def test_chunked_encode_matches_whole_for_local_encoder():
    hop = 10

    def enc(w):  # a "codec" with a receptive field of 3 frames each side
        f = w.reshape(w.shape[0], 1, -1, hop).mean(-1)
        k = torch.nn.functional.avg_pool1d(f, 7, 1, padding=3, count_include_pad=True)
        return (k * 1000).round().long().repeat(1, 2, 1)

    wav = torch.randn(2, 1, 1234)
    whole = enc(torch.nn.functional.pad(wav, (0, 1240 - 1234)))
    chunked = chunked_encode(enc, wav, hop, window=300, context=50)
    assert chunked.shape == (2, 2, 124) and torch.equal(chunked, whole)

    def dec(c):
        return c[:, :1].float().repeat_interleave(hop, -1)

    assert torch.equal(chunked_decode(dec, whole, hop, 30, 5), dec(whole))


# ---------------------------------------------------------------- compact codec
SMALL = dict(enc_dim=32, enc_blocks=1, dec_dim=32, dec_blocks=1, latent_dim=16, codebook_size=64)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_codec")
    cfg = MusicCodecConfig(**SMALL)
    codec = CompactMusicCodec(cfg)
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"codec": cfg.to_dict()}))
    return folder


@pytest.fixture(scope="module")
def small_tok(small_dir):
    return load_tokenizer("music", "compact", path=small_dir)


def test_tiny_spec_and_layout(small_tok):
    spec = small_tok.token_spec
    assert (spec.codebook_size, spec.num_codebooks) == (64, 4)
    assert (spec.prefix, spec.start, spec.end) == (RELEASED_MUSIC_SPEC.prefix, "<somu>", "<eomu>")
    codes = small_tok.encode(_tone(1.0, 16000))
    assert codes.shape == (1, 4, 25)
    layout = TokenLayout.plan(1000, [spec])
    ids = layout.codes_to_ids("music", codes[0])
    assert ((ids.reshape(25, 4) - layout["music"].code_offset) // 64 == torch.arange(4)).all()
    assert torch.equal(layout.ids_to_codes("music", ids), codes[0])
    wav = small_tok.decode(codes)
    assert wav.shape == (1, 1, 16000) and torch.isfinite(wav).all() and wav.abs().max() <= 1.0


def test_tiny_stereo_is_mixed_down(small_tok):
    left, right = _tone(0.5, 16000, 330), _tone(0.5, 16000, 550)
    stereo = torch.cat([left, right], dim=1)
    assert torch.equal(small_tok.encode(stereo), small_tok.encode((left + right) / 2))


def test_tiny_other_rate_file_is_resampled(small_tok, tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)
    path = tmp_path / "cd.wav"
    sf.write(path, stereo, 44100)
    wav = small_tok.load(path)
    assert wav.shape == (1, 16000)
    assert small_tok.encode_file(path).shape == (4, 25)


def test_tiny_long_input_is_chunked(small_tok):
    wav = torch.randn(1, 1, 16000 * 6) * 0.1
    whole = small_tok.encode(wav)
    old = small_tok.window
    try:
        small_tok.window = 2 * 16000  # force windows of 2 s with 1 s context on each side... too long
        small_tok.context = 640 * 10  # 0.4 s of context each side
        chunked = small_tok.encode(wav)
        dec = small_tok.decode(chunked)
    finally:
        small_tok.window, small_tok.context = old, 640 * 25
    assert chunked.shape == whole.shape == (1, 4, 150)
    assert (chunked == whole).float().mean() > 0.98
    assert dec.shape == (1, 1, 16000 * 6) and torch.isfinite(dec).all()


def test_tiny_odd_length_and_silence(small_tok):
    codes = small_tok.encode(torch.zeros(1, 1, 1001))
    assert codes.shape == (1, 4, 2)
    wav = small_tok.decode(codes)
    assert wav.shape == (1, 1, 1280) and torch.isfinite(wav).all()


def test_bad_input_errors(small_tok, tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(MediaError, match="corrupt.wav"):
        small_tok.load(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        small_tok.load(empty)
    with pytest.raises(MediaError, match="NaN"):
        small_tok.encode(torch.full((1, 1, 640), float("nan")))
    with pytest.raises(ValueError):
        small_tok.decode(torch.full((1, 4, 3), 64))


def test_shipped_tiny_codec_loads_and_reconstructs():
    tok = load_tokenizer("music", "compact")
    assert (tok.sample_rate, tok.frame_rate, tok.num_codebooks, tok.codebook_size) == (16000, 50.0, 4, 1024)
    t = torch.arange(16000) / 16000
    x = sum(torch.sin(2 * np.pi * 440 * h * t) / h ** 1.5 for h in range(1, 6)) * torch.exp(-t) * 0.2
    x = x.reshape(1, 1, -1)
    y = tok.decode(tok.encode(x))
    assert y.shape == x.shape

    def logspec(w):
        s = torch.stft(w[0, 0], 2048, 512, window=torch.hann_window(2048), return_complex=True).abs()
        return torch.log(s.mean(-1) + 1e-4)

    # a trained codec keeps the spectrum (its phase is its own, so compare spectra, not samples);
    # synthetic tones are outside the training corpus, hence the loose bounds
    assert np.corrcoef(logspec(x), logspec(y))[0, 1] > 0.8
    assert 0.05 < y.pow(2).mean().sqrt() / x.pow(2).mean().sqrt() < 3  # not silent, not blown up
    quiet = tok.decode(tok.encode(torch.zeros(1, 1, 16000)))
    assert quiet.pow(2).mean().sqrt() < 0.01
