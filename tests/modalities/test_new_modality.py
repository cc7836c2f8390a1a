"""A new modality needs no edit to core files: one tokenizer class + one registry entry.

"sensor" is a 1-D signal (kind "audio") at 100 Hz, 10 frames per second, written to the LM
as 2 codebooks of 16 levels: the scalar-quantised mean and standard deviation of each frame.
Everything below (layout, vocabulary expansion, AnyGPT, conversations, constrained
generation, saving media, folders) goes through the same core code as image/speech/music.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from anygpt import chat_cli
from anygpt.conversation import Conversation, media_file
from anygpt.errors import LayoutError, MediaError, ModelOutputError, UnknownModalityError
from anygpt.layout import CHAT_TOKENS, TokenLayout, added_tokens
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.tiny import random_tiny
from anygpt.media_io import load_audio, save_audio
from anygpt.modalities import (
    ModalityInfo,
    ModalityTokenizer,
    TokenSpec,
    get_modality,
    load_tokenizer,
    modality_names,
    register_modality,
    register_tokenizer,
    released_specs,
    unregister_modality,
)
from anygpt.model import AnyGPT
from anygpt.parts import CodesPart

SENSOR_SPEC = TokenSpec(
    name="sensor", prefix="\U0001F4E1", start="<sose>", end="<eose>", codebook_size=16, num_codebooks=2,
)
HOP = 10  # samples per frame: 100 Hz / 10 Hz
LEVELS = 16


class SensorTokenizer(ModalityTokenizer):
    """1-D signal [B, 1, S] at 100 Hz -> codes [B, 2, T] at 10 Hz (frame mean, frame std)."""

    name = "sensor"
    sample_rate = 100
    frame_rate = 10.0
    num_codebooks = 2
    codebook_size = LEVELS
    lm_codebooks = (0, 1)
    file_extensions = (".wav",)

    @property
    def token_spec(self) -> TokenSpec:
        return SENSOR_SPEC

    def load(self, path) -> torch.Tensor:
        return load_audio(path, self.sample_rate)  # [1, S]

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        b, c, s = media.shape
        assert c == 1, "sensor signals are mono"
        t = s // HOP
        frames = media[:, 0, : t * HOP].reshape(b, t, HOP)
        mean = frames.mean(dim=-1)
        std = frames.std(dim=-1, unbiased=False)
        q_mean = torch.round((mean + 1) / 2 * (LEVELS - 1)).clamp(0, LEVELS - 1)
        q_std = torch.round(std * (LEVELS - 1)).clamp(0, LEVELS - 1)
        return torch.stack([q_mean, q_std], dim=1).long()

    def decode(self, codes: torch.Tensor, **context) -> torch.Tensor:
        b, k, t = codes.shape
        assert k == 2, f"sensor decode needs both codebooks, got {k}"
        mean = -1 + 2 * codes[:, 0].float() / (LEVELS - 1)  # [B, T]
        std = codes[:, 1].float() / (LEVELS - 1)
        sign = torch.tensor([1.0, -1.0]).repeat(HOP // 2)  # population std of +-a is a
        wav = mean[..., None] + std[..., None] * sign  # [B, T, HOP]
        return wav.reshape(b, 1, t * HOP).clamp(-1, 1)

    def save(self, media: torch.Tensor, path) -> Path:
        return save_audio(media, path, self.sample_rate)


class WrongSizeSensorTokenizer(SensorTokenizer):
    codebook_size = 8

    @property
    def token_spec(self) -> TokenSpec:
        return TokenSpec("sensor", SENSOR_SPEC.prefix, SENSOR_SPEC.start, SENSOR_SPEC.end, codebook_size=8,
                         num_codebooks=2)


class OneCodebookSensorTokenizer(SensorTokenizer):
    lm_codebooks = (0,)

    @property
    def token_spec(self) -> TokenSpec:
        return TokenSpec("sensor", SENSOR_SPEC.prefix, SENSOR_SPEC.start, SENSOR_SPEC.end, codebook_size=16)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sensor_registered():
    """Register the modality for this module only; the registry is restored afterwards."""
    before = modality_names(with_text=True)
    before_specs = released_specs()
    register_modality(ModalityInfo(name="sensor", kind="audio", released_spec=None, file_extensions=(".wav",)))
    register_tokenizer("sensor", "simple", lambda **kw: SensorTokenizer())
    yield
    unregister_modality("sensor")
    assert modality_names(with_text=True) == before
    assert released_specs() == before_specs


@pytest.fixture(scope="module")
def built(sensor_registered):
    """A random tiny LM whose vocabulary is expanded with the release's specs plus sensor."""
    specs = [*released_specs(), SENSOR_SPEC]
    model, tok, layout = random_tiny(specs=specs)
    return model, tok, layout, specs


@pytest.fixture(scope="module")
def anygpt(built) -> AnyGPT:
    model, tok, layout, _ = built
    return AnyGPT(model, tok, layout, tokenizers={"sensor": SensorTokenizer()})


FRAMES = [(4, 0), (11, 7), (8, 3), (5, 5), (10, 1), (7, 6)]  # (mean level, std level), never clipping


def frames_signal(frames) -> np.ndarray:
    """A 100 Hz signal whose frames have exactly the given quantised mean and std."""
    out = []
    for qm, qs in frames:
        m, s = -1 + 2 * qm / (LEVELS - 1), qs / (LEVELS - 1)
        assert abs(m) + s <= 1
        out.append(m + s * np.tile([1.0, -1.0], HOP // 2))
    return np.concatenate(out).astype(np.float32)


@pytest.fixture
def sensor_wav(tmp_path) -> Path:
    path = tmp_path / "reading.wav"
    sf.write(path, frames_signal(FRAMES), 100, subtype="FLOAT")
    return path


EXPECTED_CODES = torch.tensor(FRAMES).t()  # [2, T]


# ----------------------------------------------------------------------------- the tokenizer itself
def test_sensor_tokenizer_encodes_and_decodes(sensor_wav):
    tok = SensorTokenizer()
    media = tok.load(sensor_wav)
    assert media.shape == (1, len(FRAMES) * HOP)
    codes = tok.encode(media.unsqueeze(0))
    assert codes.dtype == torch.long and codes.shape == (1, 2, len(FRAMES))
    assert torch.equal(codes[0], EXPECTED_CODES)
    assert torch.equal(tok.encode_file(sensor_wav), EXPECTED_CODES)
    assert torch.equal(tok.encode(tok.decode(codes)), codes)


def test_registry_knows_the_new_modality(sensor_registered, tmp_path):
    info = get_modality("sensor")
    assert info.kind == "audio" and info.released_spec is None
    assert "sensor" in modality_names()
    assert SENSOR_SPEC not in released_specs()  # the release's vocabulary is untouched
    assert isinstance(load_tokenizer("sensor", "simple"), SensorTokenizer)
    with pytest.raises(UnknownModalityError, match="simple"):
        load_tokenizer("sensor", "pretrained")
    png = tmp_path / "x.png"
    png.write_bytes(b"x")
    with pytest.raises(MediaError, match=r"\.wav"):
        media_file("sensor", png)


# ----------------------------------------------------------------------------- layout
def test_layout_has_the_new_range_with_markers(built):
    _, tok, layout, specs = built
    assert layout.modalities == ["image", "speech", "music", "sensor"]
    r = layout["sensor"]
    music = layout["music"]
    # vocabulary order: ... music codes, <somu>, <eomu>, sensor codes, <sose>, <eose>, <-Res->, <-Ins->
    assert r.code_offset == max(music.start_id, music.end_id) + 1
    assert r.code_end == r.code_offset + 32
    assert (r.start_id, r.end_id) == (r.code_end, r.code_end + 1)
    assert layout.special_ids[CHAT_TOKENS[0]] == r.end_id + 1
    assert tok.convert_tokens_to_ids("<sose>") == r.start_id
    assert tok.convert_tokens_to_ids("<eose>") == r.end_id
    assert [tok.convert_tokens_to_ids(SENSOR_SPEC.code_token(i)) for i in range(32)] == \
        list(range(r.code_offset, r.code_end))
    assert r.layer_range(0) == (r.code_offset, r.code_offset + 16)
    assert r.layer_range(1) == (r.code_offset + 16, r.code_offset + 32)
    # the same as planned from the base vocabulary; the release's modalities did not move
    base = len(tok) - len(added_tokens(specs))
    planned = TokenLayout.plan(base, specs)
    assert {n: (x.code_offset, x.start_id, x.end_id) for n, x in planned.ranges.items()} == \
        {n: (x.code_offset, x.start_id, x.end_id) for n, x in layout.ranges.items()}
    released = TokenLayout.plan(base, released_specs())
    for name in ("image", "speech", "music"):
        assert layout[name] == released[name]
    assert layout.vocab_size == len(tok) == base + len(added_tokens(specs))


def test_codes_ids_and_text_round_trip(built):
    _, tok, layout, _ = built
    off = layout["sensor"].code_offset
    codes = torch.tensor([[1, 2, 15], [3, 4, 0]])
    ids = layout.codes_to_ids("sensor", codes)
    assert ids.tolist() == [off + 1, off + 16 + 3, off + 2, off + 16 + 4, off + 15, off + 16]
    assert torch.equal(layout.ids_to_codes("sensor", ids), codes)
    text = layout.codes_to_text("sensor", codes)
    p = "\U0001F4E1"
    assert text == f"<sose><{p}1><{p}19><{p}2><{p}20><{p}15><{p}16><eose>"
    assert torch.equal(layout.text_to_codes("sensor", text), codes)
    # the LM's tokenizer reads the string as exactly the segment's ids
    assert tok(text, add_special_tokens=False)["input_ids"] == layout.segment_ids("sensor", codes).tolist()
    parts = layout.parse_text(f"before {text} after")
    assert [type(x).__name__ for x in parts] == ["TextPart", "CodesPart", "TextPart"]
    assert parts[1] == CodesPart("sensor", codes)


def test_bad_sensor_codes_and_ids_are_refused(built):
    _, _, layout, _ = built
    off = layout["sensor"].code_offset
    with pytest.raises(LayoutError, match="0..15"):
        layout.codes_to_ids("sensor", torch.tensor([[16], [0]]))
    with pytest.raises(LayoutError, match=r"\[2, T\]"):
        layout.codes_to_ids("sensor", torch.tensor([[1, 2]]))
    with pytest.raises(LayoutError, match="whole number"):
        layout.ids_to_codes("sensor", torch.tensor([off + 1, off + 17, off + 2]))
    with pytest.raises(LayoutError, match="codebook"):
        layout.ids_to_codes("sensor", torch.tensor([off + 17, off + 1]))  # codebooks swapped
    with pytest.raises(LayoutError):
        layout.text_to_codes("sensor", "<sose><\U0001F4E11><eose>")  # half a frame


# ----------------------------------------------------------------------------- AnyGPT
def test_conversation_with_a_sensor_file_encodes_its_segment(anygpt, sensor_wav):
    conv = Conversation()
    conv.add_user("What happened to the sensor?", sensor=[sensor_wav])
    ids = anygpt.sequence_encoder.encode(anygpt.template.prompt(conv.turns), bos=True).tolist()
    seg = anygpt.layout.segment_ids("sensor", EXPECTED_CODES).tolist()
    assert len(seg) == 2 + 2 * len(FRAMES)
    starts = [i for i in range(len(ids) - len(seg) + 1) if ids[i:i + len(seg)] == seg]
    assert len(starts) == 1
    # nothing else in the prompt is a sensor token
    r = anygpt.layout["sensor"]
    others = ids[:starts[0]] + ids[starts[0] + len(seg):]
    assert not any(r.code_offset <= i < r.code_end or i in (r.start_id, r.end_id) for i in others)
    # and decoding the prompt ids gives the codes back
    media = [p for p in anygpt.sequence_encoder.decode(ids) if isinstance(p, CodesPart)]
    assert media == [CodesPart("sensor", EXPECTED_CODES)]


@pytest.mark.parametrize("seed, budget", [(0, 9), (1, 16), (2, 30), (3, 41)])
def test_forced_generation_yields_whole_sensor_frames(anygpt, seed, budget):
    conv = Conversation()
    conv.add_user("Show me a sensor trace.")
    reply = anygpt.generate(conv, settings=GenerationSettings(max_new_tokens=budget), force_modality="sensor",
                            seed=seed)
    media = reply.media("sensor")
    assert media and reply.parts[0] is media[0]  # the forced segment comes first
    for part in media:
        assert part.repaired is None
        k, t = part.codes.shape
        assert k == 2 and t >= 1 and 2 * t + 1 <= budget
        assert part.codes.min() >= 0 and part.codes.max() < 16
        text = anygpt.layout.codes_to_text("sensor", part.codes)
        assert torch.equal(anygpt.layout.text_to_codes("sensor", text), part.codes)  # strict parse
    assert conv.turns[-1].role == "assistant" and conv.turns[-1].parts == reply.parts


def test_max_frames_limits_sensor_segments(anygpt):
    conv = Conversation()
    conv.add_user("Short trace please.")
    settings = GenerationSettings(max_new_tokens=40, max_frames={"sensor": 3})
    reply = anygpt.generate(conv, settings=settings, force_modality="sensor", seed=5)
    assert all(p.codes.shape[1] <= 3 for p in reply.media("sensor"))


def test_unconstrained_generation_is_parsed_leniently(anygpt, monkeypatch):
    """Without the constraint the reply is parsed as the release does: whole frames kept, the
    partial frame dropped, the segment marked repaired. The LM's output is fixed by a stub."""
    import anygpt.model as model_module

    r = anygpt.layout["sensor"]
    written = [r.code_offset + 3, r.code_offset + 16 + 5, r.code_offset + 7]  # one frame + a partial one
    monkeypatch.setattr(model_module, "generate_ids", lambda *a, **k: torch.tensor([written]))
    conv = Conversation()
    conv.add_user("Anything.")
    reply = anygpt.generate(conv, settings=GenerationSettings(max_new_tokens=12, constrained=False),
                            force_modality="sensor", seed=0, engine="hf")  # the stub replaces HF generate
    (part,) = reply.media("sensor")
    assert reply.parts[0] is part
    assert part.codes.tolist() == [[3], [5]] and "truncated" in part.repaired
    conv.turns.pop()
    with pytest.raises(ModelOutputError):  # the constrained path parses strictly
        anygpt.generate(conv, settings=GenerationSettings(max_new_tokens=12), force_modality="sensor", seed=0,
                        engine="hf")


def test_save_media_writes_a_wav_that_loads_back(anygpt, tmp_path):
    conv = Conversation()
    conv.add_user("Record something.")
    reply = anygpt.generate(conv, settings=GenerationSettings(max_new_tokens=25), force_modality="sensor", seed=1)
    part = reply.media("sensor")[0]
    files = anygpt.save_media(reply, tmp_path / "out", stem="sensor-test")
    assert files[0] == tmp_path / "out" / "sensor-test-0-sensor.wav"
    assert reply.files == files
    assert all(f.suffix == ".wav" and f.exists() for f in files)
    info = sf.info(str(files[0]))
    assert info.samplerate == 100 and info.channels == 1
    back = load_audio(files[0], 100)
    t = part.codes.shape[1]
    assert back.shape == (1, t * HOP)
    expected = SensorTokenizer().decode(part.codes.unsqueeze(0))[0]
    assert torch.max(torch.abs(back - expected)) <= 1.0 / 32768 + 1e-6
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_file_round_trip_through_the_model(anygpt, sensor_wav, tmp_path):
    """file -> codes (encode_media) -> file (save_media) -> codes: the same codes."""
    from anygpt.conversation import Reply
    from anygpt.parts import MediaFilePart

    part = anygpt.encode_media(MediaFilePart("sensor", sensor_wav))
    assert part == CodesPart("sensor", EXPECTED_CODES)
    [path] = anygpt.save_media(Reply([part]), tmp_path)
    assert torch.equal(SensorTokenizer().encode_file(path), EXPECTED_CODES)


def test_mismatched_tokenizer_is_refused(anygpt, built):
    model, tok, layout, _ = built
    for bad in (WrongSizeSensorTokenizer(), OneCodebookSensorTokenizer()):
        with pytest.raises(LayoutError) as e:
            anygpt.set_tokenizer("sensor", bad)
        assert "sensor" in str(e.value)
        with pytest.raises(LayoutError):
            AnyGPT(model, tok, layout, tokenizers={"sensor": bad})
    assert isinstance(anygpt.tokenizers["sensor"], SensorTokenizer)  # the good one is kept
    # a model whose layout has no sensor range refuses a sensor tokenizer
    released = TokenLayout.plan(len(tok) - len(added_tokens(built[3])), released_specs())
    with pytest.raises(UnknownModalityError, match="sensor"):
        AnyGPT(model, tok, released, tokenizers={"sensor": SensorTokenizer()})


def test_folder_with_the_new_modality_round_trips(anygpt, tmp_path, sensor_wav):
    """save_pretrained/from_pretrained keep the sensor range and rebuild its tokenizer from the
    registry entry named in anygpt.json."""
    anygpt.tokenizer_entries = {"sensor": {"loader": "simple", "path": "sensor-tokenizer"}}
    try:
        folder = anygpt.save_pretrained(tmp_path / "anygpt-sensor")
    finally:
        anygpt.tokenizer_entries = {}
    loaded = AnyGPT.from_pretrained(folder)
    assert loaded.layout.modalities == anygpt.layout.modalities
    assert loaded.layout["sensor"] == anygpt.layout["sensor"]
    assert isinstance(loaded.tokenizers["sensor"], SensorTokenizer)
    conv = Conversation()
    conv.add_user("Again.", sensor=[sensor_wav])
    prompt = anygpt.template.prompt(conv.turns)
    assert torch.equal(loaded.sequence_encoder.encode(prompt), anygpt.sequence_encoder.encode(prompt))


def test_chat_command_accepts_the_new_modality(sensor_registered):
    """`anygpt chat` should offer every registered modality (attach with --sensor, force with
    --force-modality sensor) without editing chat_cli.py."""
    args = chat_cli.build_parser().parse_args(["--force-modality", "sensor", "--sensor", "reading.wav"])
    assert args.force_modality == "sensor"
    assert args.sensor == ["reading.wav"]
