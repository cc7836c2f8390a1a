"""Speech tokenizer "tiny": compact codec + SoundStorm acoustic model, shapes, layout, voice
prompts, bad input (the trainers' tests are in tests/train/). Nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from anygpt.errors import MediaError
from anygpt.layout import TokenLayout
from anygpt.modalities import load_tokenizer
from anygpt.modalities.specs import RELEASED_SPEECH_SPEC
from anygpt.nn.soundstorm import SoundStorm, SoundStormConfig, load_soundstorm, save_soundstorm
from anygpt.nn.speech_codec import CompactSpeechCodec, SpeechCodecConfig, load_codec, save_codec

SMALL_CODEC = dict(enc_dim=32, enc_blocks=1, dec_dim=32, dec_blocks=1, latent_dim=16, num_codebooks=3,
                   codebook_size=32, semantic_codebook_size=48, semantic_dim=8, decode_phase_iters=2)
SMALL_STORM = dict(dim=32, depth=1, heads=2, dim_head=16, ff_mult=2, conv_kernel=7, num_quantizers=2,
                   codebook_size=32, num_semantic_token_ids=48, dropout=0.0)


def _voice(seconds: float, sr: int = 16000, f0: float = 140.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    buzz = sum(torch.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 8))
    return (0.1 * buzz * (0.6 + 0.4 * torch.sin(2 * np.pi * 3 * t))).reshape(1, 1, -1)


@pytest.fixture(scope="module")
def small_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_tiny")
    save_codec(CompactSpeechCodec(SpeechCodecConfig(**SMALL_CODEC)), root / "codec")
    save_soundstorm(SoundStorm(SoundStormConfig(**SMALL_STORM)), root / "storm")
    from safetensors.torch import save_file

    save_file({"codes": torch.randint(0, 32, (3, 20))}, str(root / "storm" / "prompt.safetensors"))
    return root


@pytest.fixture(scope="module")
def tok(small_dirs):
    return load_tokenizer("speech", "compact", path=small_dirs / "codec", acoustic_path=small_dirs / "storm")


def test_saved_weights_are_float16_and_load_back(small_dirs):
    from safetensors.torch import load_file

    state = load_file(str(small_dirs / "codec" / "model.safetensors"))
    dtypes = {k: v.dtype for k, v in state.items()}
    assert dtypes["enc_in.weight"] == torch.float16
    assert all(v == torch.float32 for k, v in dtypes.items() if "codebook" in k)
    codec = load_codec(small_dirs / "codec")
    assert codec.enc_in.weight.dtype == torch.float32
    assert load_soundstorm(small_dirs / "storm").cfg.num_quantizers == 2


def test_spec_codes_and_layout(tok):
    spec = tok.token_spec
    assert (spec.prefix, spec.start, spec.end) == (RELEASED_SPEECH_SPEC.prefix, "<sosp>", "<eosp>")
    assert (spec.codebook_size, spec.num_codebooks, tok.lm_codebooks) == (48, 1, (0,))
    codes = tok.encode(_voice(1.0))
    assert codes.shape == (1, 3, 25) and codes.dtype == torch.long
    assert codes[:, 0].max() < 48 and codes[:, 1:].max() < 32
    layout = TokenLayout.plan(1000, [spec])
    lm = tok.to_lm(codes)[0]
    assert torch.equal(layout.ids_to_codes("speech", layout.codes_to_ids("speech", lm)), lm)
    wav = tok.decode(codes)
    assert wav.shape == (1, 1, 16000) and torch.isfinite(wav).all() and wav.abs().max() <= 1.0


def test_layer1_decode_fills_acoustic_layers_from_the_prompt(tok, tmp_path):
    semantic = tok.encode(_voice(1.0))[:, :1]
    path = tmp_path / "prompt.wav"
    sf.write(path, _voice(3.0, f0=220.0)[0, 0].numpy(), 16000)
    full_a = tok.fill_acoustic(semantic[:, 0], path)
    assert full_a.shape == (1, 3, 25) and torch.equal(full_a[:, 0], semantic[:, 0])
    assert full_a[:, 1:].min() >= 0 and full_a[:, 1:].max() < 32
    assert torch.equal(full_a, tok.fill_acoustic(semantic[:, 0], path))  # deterministic for a seed
    # the prompt may be a path, audio [C, S] or codes [K, P]; all reach the acoustic model
    prompt_codes = tok.encode(tok.load(path)[None])[0]
    assert torch.equal(full_a, tok.fill_acoustic(semantic[:, 0], prompt_codes))
    other = tok.fill_acoustic(semantic[:, 0], torch.randint(0, 32, (3, 40)))
    assert not torch.equal(full_a, other)
    wav = tok.decode(semantic, voice_prompt=path)
    assert wav.shape == (1, 1, 16000) and torch.isfinite(wav).all()
    assert tok.decode(semantic).shape == (1, 1, 16000)  # the default prompt


def test_bad_codes_are_named(tok):
    with pytest.raises(ValueError, match=r"K in \(1, 2, 3\)"):
        tok.decode(torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="layer 1 must be in 0..47"):
        tok.decode(torch.full((1, 1, 5), 48))
    with pytest.raises(ValueError, match="layer 2 must be in 0..31"):
        tok.decode(torch.cat([torch.zeros(1, 1, 5), torch.full((1, 2, 5), 40)], 1).long())


def test_stereo_resample_empty_and_long_input(tok, tmp_path):
    left, right = _voice(0.5, f0=120.0), _voice(0.5, f0=200.0)
    assert torch.equal(tok.encode(torch.cat([left, right], 1)), tok.encode((left + right) / 2))
    t = np.arange(44100) / 44100
    path = tmp_path / "cd.wav"
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1), 44100)
    assert tok.load(path).shape == (1, 16000) and tok.encode_file(path).shape == (1, 25)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), np.float32), 16000)
    with pytest.raises(MediaError, match="empty.wav"):
        tok.load(empty)
    with pytest.raises(MediaError, match="no samples"):
        tok.encode(torch.zeros(1, 1, 0))
    long = _voice(33.0) + 0.01 * torch.randn(1, 1, 33 * 16000)  # over the 30 s window: chunked
    codes = tok.encode(long)
    assert codes.shape == (1, 3, 825)
    # the windows' context covers the encoder's receptive field: same codes as one whole call
    assert torch.equal(codes, tok.codec.encode(torch.nn.functional.pad(long, (0, 825 * 640 - long.shape[-1]))))
    assert tok.decode(codes).shape == (1, 1, 825 * 640)


def test_shipped_tokenizer_loads_and_keeps_silence_quiet():
    tok = load_tokenizer("speech", "compact")
    assert tok.acoustic is not None and tok.default_prompt is not None
    assert tok.frame_rate == 25.0 and tok.token_spec.codebook_size == tok.codec.cfg.semantic_codebook_size
    quiet = tok.decode(tok.encode(torch.zeros(1, 1, 16000)))
    assert quiet.pow(2).mean().sqrt() < 0.01


@pytest.mark.parametrize("name", ["compact", "units"])
def test_lm_codes_alone_equal_layer1_of_all_codes(name):
    """encode_lm is the LM's path (corpora, user audio); the units codec skips its own encoder."""
    tok = load_tokenizer("speech", name)
    t = np.arange(int(16000 * 2.3)) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.3 * np.sin(3 * t))) * (np.sin(7 * t) > 0)).astype(np.float32)
    wav = torch.from_numpy(wav)[None, None]
    for batch in (wav, torch.cat([wav, wav.flip(-1)])):
        lm = tok.encode_lm(batch)
        assert lm.shape == (batch.shape[0], 1, 58)
        assert torch.equal(lm, tok.encode(batch)[:, :1])
    assert torch.equal(tok.encode_item(wav[0]), lm[0])


def test_a_phone_units_codec_loads_codes_and_gives_its_phone_rows_as_code_vectors(tmp_path):
    """A "units" codec whose units are phones (anygpt.nn.content_units, objective "phones"):
    saved, loaded as tokenizer "units", its LM codes are phones and its code vectors the phone
    head's rows (what `train lm --code-init` starts the codes' rows from)."""
    from anygpt.nn.content_units import PHONES

    cfg = SpeechCodecConfig(**{**SMALL_CODEC, "semantic_codebook_size": len(PHONES)}, layer1="units",
                            units_objective="phones", units_context=2, units_dim=8, units_hidden=16)
    save_codec(CompactSpeechCodec(cfg), tmp_path / "codec")
    storm = {**SMALL_STORM, "num_semantic_token_ids": len(PHONES)}
    save_soundstorm(SoundStorm(SoundStormConfig(**storm)), tmp_path / "storm")
    tok = load_tokenizer("speech", "units", path=tmp_path / "codec", acoustic_path=tmp_path / "storm")
    assert tok.token_spec.codebook_size == len(PHONES)
    vectors = tok.lm_code_vectors()
    assert vectors.shape == (len(PHONES), 8) and torch.equal(vectors, tok.codec.units.head.weight[1:].float())
    codes = tok.encode_lm(_voice(1.2))
    assert codes.shape == (1, 1, 30) and 0 <= int(codes.min()) and int(codes.max()) < len(PHONES)
