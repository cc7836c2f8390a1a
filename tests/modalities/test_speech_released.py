"""Released speech modules (fnlp/AnyGPT-speech-modules layout) from random weights: the
SpeechTokenizer through the `speechtokenizer` package, SoundStorm through our implementation
with the release's key names and file format. Nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from anygpt.errors import CheckpointError, MediaError
from anygpt.layout import TokenLayout
from anygpt.modalities import released_specs
from anygpt.modalities.specs import RELEASED_SPEECH_SPEC
from anygpt.modalities.speech_released import (
    RELEASED_CONFIG, SOUNDSTORM_FILE, ReleasedSpeechTokenizer, build_speechtokenizer,
    load_released_speech_modules, load_released_speech_tokenizer,
)
from anygpt.nn.soundstorm import (
    RELEASED_SOUNDSTORM_CONFIG, SoundStorm, SoundStormConfig, load_released_soundstorm, released_state_dict,
)

# same key names as the release, smaller widths (fast); the released size is tested once below
SMALL_CONFIG = dict(RELEASED_CONFIG, n_filters=8, dimension=64, semantic_dimension=48)
SOUNDSTORM_DEPTH = 1  # released widths, one Conformer layer instead of 12


def _tone(seconds: float, sr: int = 16000, f0: float = 220.0) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return (0.3 * torch.sin(2 * np.pi * f0 * t) * (1 + torch.sin(2 * np.pi * 3 * t)) / 2).reshape(1, 1, -1)


def _init_codebooks(model, seed: int = 0) -> None:
    """Random codebooks near the encoder's outputs (the package starts them at zero for k-means),
    so that random weights give varied codes."""
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(1, 1, 16000 * 4, generator=g) * torch.linspace(0, 0.5, 16000 * 4)
    with torch.inference_mode():
        frames = model.encoder(wav)[0].T  # [T, D]
    for layer in model.quantizer.vq.layers:
        cb = layer._codebook
        pick = torch.randint(0, frames.shape[0], (cb.embed.shape[0],), generator=g)
        embed = frames[pick] + torch.randn(cb.embed.shape, generator=g) * frames.std(0) * 0.1
        cb.embed.copy_(embed)
        cb.embed_avg.copy_(embed)
        cb.inited.fill_(1)
        frames = frames - embed[torch.cdist(frames, embed).argmin(-1)]


def _write_modules(folder, config, *, soundstorm: bool = False):
    """Write the released layout: speechtokenizer/config.json + ckpt.dev (bare state dict), and
    optionally soundstorm/speechtokenizer_soundstorm_mls.pt. -> (the SpeechTokenizer, SoundStorm or None)."""
    torch.manual_seed(0)
    model = build_speechtokenizer(config).eval()
    _init_codebooks(model)
    (folder / "speechtokenizer").mkdir(parents=True)
    # the release's config.json also holds training settings; the model ignores them
    (folder / "speechtokenizer" / "config.json").write_text(json.dumps({**config, "semantic_model_layer": "avg"}))
    torch.save(model.state_dict(), folder / "speechtokenizer" / "ckpt.dev")
    storm = None
    if soundstorm:
        storm = SoundStorm(SoundStormConfig.from_dict({**RELEASED_SOUNDSTORM_CONFIG.to_dict(), "depth": SOUNDSTORM_DEPTH}))
        (folder / SOUNDSTORM_FILE).parent.mkdir(parents=True)
        torch.save(released_state_dict(storm), folder / SOUNDSTORM_FILE)
    return model, storm


@pytest.fixture(scope="module")
def released_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("AnyGPT-speech-modules-full")
    model, _ = _write_modules(folder, RELEASED_CONFIG)
    return folder, model


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("AnyGPT-speech-modules")
    model, storm = _write_modules(folder, SMALL_CONFIG, soundstorm=True)
    return folder, model, storm


@pytest.fixture(scope="module")
def small_tok(small_dir):
    return load_released_speech_tokenizer(small_dir[0], soundstorm=False)


# ---------------------------------------------------------------- SpeechTokenizer, released size
def test_released_size_loads_strictly_and_round_trips(released_dir):
    folder, original = released_dir
    tok = load_released_speech_tokenizer(folder)
    assert isinstance(tok, ReleasedSpeechTokenizer) and tok.acoustic is None
    state, want = tok.model.state_dict(), original.state_dict()
    assert len(state) == 166 and list(state) == list(want)
    assert all(torch.equal(state[k], want[k]) for k in want)
    # a few recorded facts of the released layout (speechtokenizer_hubert_avg)
    shapes = {"encoder.model.0.conv.conv.weight_v": (64, 1, 7), "transform.weight": (768, 1024),
              "quantizer.vq.layers.7._codebook.embed": (1024, 1024), "decoder.model.15.conv.conv.weight_v": (1, 64, 7)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert sum(v.numel() for k, v in state.items() if "_codebook" not in k) > 80_000_000

    assert tok.token_spec == RELEASED_SPEECH_SPEC
    assert (tok.sample_rate, tok.frame_rate, tok.num_codebooks, tok.codebook_size, tok.lm_codebooks) == (
        16000, 50.0, 8, 1024, (0,))
    wav = _tone(1.0)
    released = tok.encode_released(wav)
    assert released.shape == (8, 1, 50)  # the package's layout: 1 s -> 50 frames of 8 layers
    with torch.inference_mode():
        assert torch.equal(released, original.encode(wav))  # same codes as the package itself
    codes = tok.encode(wav)
    assert codes.shape == (1, 8, 50) and codes.dtype == torch.long and torch.equal(codes[0], released[:, 0])
    assert codes[0, 0].unique().numel() > 5
    out = tok.decode(codes)
    assert out.shape == (1, 1, 16000) and torch.isfinite(out).all()


# ---------------------------------------------------------------- layout, loader, bad input
def test_layer1_goes_through_the_release_ids(small_tok):
    codes = small_tok.encode(_tone(1.0))
    lm = small_tok.to_lm(codes)
    assert lm.shape == (1, 1, 50)
    layout = TokenLayout.plan(32000, released_specs())
    ids = layout.codes_to_ids("speech", lm[0])
    r = layout["speech"]
    assert ids.shape == (50,) and torch.equal(ids - r.code_offset, codes[0, 0])
    back = layout.ids_to_codes("speech", ids)
    assert torch.equal(back.reshape(1, 1, -1), lm)
    text = layout.codes_to_text("speech", lm[0])
    assert text.startswith("<sosp><\U0001F5E3\uFE0F") and torch.equal(layout.text_to_codes("speech", text), lm[0])
    assert small_tok.decode(back.reshape(1, 1, -1)).shape == (1, 1, 16000)  # layer 1 alone, no SoundStorm


def test_tokenizer_folder_itself_and_modules_folder_agree(small_dir, small_tok):
    direct = load_released_speech_tokenizer(small_dir[0] / "speechtokenizer", soundstorm=False)
    wav = _tone(0.5)
    assert torch.equal(direct.encode(wav), small_tok.encode(wav))


def test_missing_or_bad_files_are_named(tmp_path, small_dir):
    with pytest.raises(CheckpointError, match="huggingface-cli download fnlp/AnyGPT-speech-modules"):
        load_released_speech_tokenizer()
    with pytest.raises(CheckpointError, match="no such folder"):
        load_released_speech_tokenizer(tmp_path / "nowhere")
    st = tmp_path / "speechtokenizer"
    st.mkdir()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_released_speech_tokenizer(tmp_path)
    (st / "config.json").write_text(json.dumps(SMALL_CONFIG))
    with pytest.raises(CheckpointError, match="ckpt.dev: missing"):
        load_released_speech_tokenizer(tmp_path)
    (st / "ckpt.dev").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="ckpt.dev: not a torch state dict"):
        load_released_speech_tokenizer(tmp_path)
    torch.save({"encoder.model.0.conv.conv.bias": torch.zeros(3)}, st / "ckpt.dev")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_released_speech_tokenizer(tmp_path)
    (st / "ckpt.dev").write_bytes((small_dir[0] / "speechtokenizer" / "ckpt.dev").read_bytes())
    with pytest.raises(CheckpointError, match="speechtokenizer_soundstorm_mls.pt: missing"):
        load_released_speech_modules(tmp_path)
    with pytest.raises(CheckpointError, match="other.pt: missing"):
        load_released_speech_tokenizer(tmp_path, soundstorm=tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="speechtokenizer_soundstorm_mls.pt"):
        load_released_speech_tokenizer(tmp_path).fill_acoustic(torch.zeros(1, 5, dtype=torch.long))


def test_bad_input(small_tok, tmp_path):
    with pytest.raises(MediaError, match="no samples"):
        small_tok.encode(torch.zeros(1, 1, 0))
    with pytest.raises(MediaError, match="NaN"):
        small_tok.encode(torch.full((1, 1, 640), float("nan")))
    silent = small_tok.encode(torch.zeros(1, 1, 16000))
    assert silent.shape == (1, 8, 50)
    assert torch.isfinite(small_tok.decode(silent)).all()
    assert small_tok.encode(torch.zeros(1, 1, 1001)).shape == (1, 8, 4)  # padded to whole frames
    left, right = _tone(0.5, f0=330), _tone(0.5, f0=550)
    assert torch.equal(small_tok.encode(torch.cat([left, right], dim=1)), small_tok.encode((left + right) / 2))
    cd = _tone(1.0, 44100)
    assert small_tok.prepare(torch.cat([cd, cd], dim=1), 44100).shape == (1, 1, 16000)
    path = tmp_path / "cd.wav"
    sf.write(path, torch.cat([cd, -cd], dim=1)[0].T.numpy(), 44100)
    assert small_tok.load(path).shape == (1, 16000)
    assert small_tok.encode_file(path).shape == (1, 50)
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(MediaError, match="corrupt.wav"):
        small_tok.load(bad)
    for codes in (torch.full((1, 8, 3), 1024), torch.full((1, 9, 3), 0), torch.full((1, 8, 3), -1)):
        with pytest.raises(ValueError):
            small_tok.decode(codes)


def test_long_input_is_chunked(small_dir):
    tok = load_released_speech_tokenizer(small_dir[0], soundstorm=False)
    wav = torch.randn(1, 1, 16000 * 6, generator=torch.Generator().manual_seed(3)) * 0.1
    whole = tok.encode(wav)
    tok.window, tok.context = 2 * 16000, 20 * 320  # 2 s windows, 0.4 s of context each side
    chunked = tok.encode(wav)
    assert chunked.shape == whole.shape == (1, 8, 300)
    assert (chunked[:, 0] == whole[:, 0]).float().mean() > 0.7  # BiLSTM: context beyond 0.4 s matters a bit
    out = tok.decode(chunked)
    assert out.shape == (1, 1, 16000 * 6) and torch.isfinite(out).all()


# ---------------------------------------------------------------- SoundStorm
def _released_soundstorm_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of the released checkpoint (dim 1024, 8 heads x 128, 7 x 1024 codes,
    1024 semantic ids), as lucidrains' Conformer and EinMix lay them out in the release."""
    d, q, l, inner = 1024, 7, 1024, 2048
    shapes = {"semantic_token_emb.weight": (1024, d), "net.code_embeds.weight": ((l + 1) * q, d),
              "net.heads.0.weight": (d * q, d), "net.heads.0.bias": (d * q,),
              "net.to_logits.0.weight": (d,), "net.to_logits.0.bias": (d,),
              "net.to_logits.2.weight": (q, d, l), "net.to_logits.2.bias": (1, 1, q, l)}
    block = {"ff{}.fn.norm.weight": (d,), "ff{}.fn.norm.bias": (d,), "ff{}.fn.fn.net.0.weight": (4 * d, d),
             "ff{}.fn.fn.net.0.bias": (4 * d,), "ff{}.fn.fn.net.3.weight": (d, 4 * d), "ff{}.fn.fn.net.3.bias": (d,)}
    layer = {k.format(i): v for i in (1, 2) for k, v in block.items()}
    layer.update({"attn.norm.weight": (d,), "attn.norm.bias": (d,), "attn.fn.to_q.weight": (1024, d),
                  "attn.fn.to_kv.weight": (2048, d), "attn.fn.to_out.weight": (d, 1024), "attn.fn.to_out.bias": (d,),
                  "conv.net.0.weight": (d,), "conv.net.0.bias": (d,), "conv.net.2.weight": (2 * inner, d, 1),
                  "conv.net.2.bias": (2 * inner,), "conv.net.4.conv.weight": (inner, 1, 31),
                  "conv.net.4.conv.bias": (inner,), "conv.net.6.gamma": (1, inner, 1),
                  "conv.net.7.weight": (d, inner, 1), "conv.net.7.bias": (d,),
                  "post_norm.weight": (d,), "post_norm.bias": (d,)})
    for i in range(depth):
        shapes.update({f"net.conformer.layers.{i}.{k}": v for k, v in layer.items()})
    return shapes


def test_released_soundstorm_file_format_and_strict_load(small_dir, tmp_path):
    file = small_dir[0] / SOUNDSTORM_FILE
    state = torch.load(file, map_location="cpu", weights_only=True)  # a bare state dict
    assert {k: tuple(v.shape) for k, v in state.items()} == _released_soundstorm_shapes(SOUNDSTORM_DEPTH)
    model = load_released_soundstorm(file, depth=SOUNDSTORM_DEPTH)
    assert model.cfg.depth == SOUNDSTORM_DEPTH and not model.training
    assert all(torch.equal(v, state[k].reshape(v.shape)) for k, v in model.state_dict().items())
    torch.save({"model": state, "optim": {}}, tmp_path / "trainer.pt")  # SoundStormTrainer checkpoint
    assert load_released_soundstorm(tmp_path / "trainer.pt", depth=SOUNDSTORM_DEPTH) is not None
    with pytest.raises(CheckpointError, match="do not fit the released SoundStorm"):
        load_released_soundstorm(file, depth=2)  # one layer short (the default expects 12)
    with pytest.raises(CheckpointError, match="no such file"):
        load_released_soundstorm(tmp_path / "missing.pt")


def test_soundstorm_fills_acoustic_layers_from_layer1_and_prompt(small_dir):
    folder, _, storm = small_dir
    tok = load_released_speech_modules(folder, soundstorm_depth=SOUNDSTORM_DEPTH)
    assert isinstance(tok.acoustic, SoundStorm)
    target, prompt = tok.encode(_tone(0.5)), tok.encode(_tone(0.3, f0=150))
    semantic = torch.cat([target[:, 0], target[:, 0].flip(-1)])  # B = 2
    full = tok.fill_acoustic(semantic, voice_prompt=prompt[0])
    assert full.shape == (2, 8, 25) and torch.equal(full[:, 0], semantic)
    acoustic = full[:, 1:]  # [B, 7, T]
    assert acoustic.min() >= 0 and acoustic.max() <= 1023
    wav = tok.decode(target[:, :1], voice_prompt=_tone(0.3, f0=150)[0])
    assert wav.shape == (1, 1, 8000) and torch.isfinite(wav).all()
    assert tok.decode(target[:, :1]).shape == (1, 1, 8000)  # unprompted, as the release allows
    lazy = load_released_speech_tokenizer(folder, soundstorm_depth=SOUNDSTORM_DEPTH)
    assert not isinstance(lazy._acoustic, torch.nn.Module)  # not loaded until decoding needs it
    assert torch.equal(lazy.fill_acoustic(semantic, voice_prompt=prompt[0]), full)  # same weights, seeded
    with pytest.raises(ValueError, match=r"K in \(8,\)"):
        tok.fill_acoustic(semantic, voice_prompt=prompt[0, :3])
