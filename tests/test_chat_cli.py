"""Conversation, Reply, AnyGPT.generate's checks, and `anygpt chat` (through the dispatcher, which
owns the error convention)."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from anygpt import cli
from anygpt.conversation import Conversation, Reply, media_file
from anygpt.errors import AnyGPTError, MediaError, UnknownModalityError
from anygpt.layout import TokenLayout
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.tiny import random_tiny
from anygpt.modalities import released_specs
from anygpt.model import AnyGPT
from anygpt.parts import CodesPart, MediaFilePart, TextPart


def chat(*argv: str) -> int:
    """`anygpt chat ARGV` as the command runs it: the exit status; messages on stdout/stderr."""
    return cli.main(["chat", *argv])


@pytest.fixture(scope="module")
def layout() -> TokenLayout:
    # the text form of codes does not depend on ids, so any layout of the release's specs reads it
    return TokenLayout.plan(600, released_specs())


@pytest.fixture(scope="module")
def tiny() -> AnyGPT:
    model, tok, layout = random_tiny()
    return AnyGPT(model, tok, layout)


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), (200, 100, 50)).save(path)
    return path


@pytest.fixture
def wav(tmp_path):
    import soundfile as sf

    path = tmp_path / "hello.wav"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    return path


# ----------------------------------------------------------------------------- Conversation
def test_add_user_puts_media_first_then_text(png, wav):
    conv = Conversation()
    turn = conv.add_user("What is this?", image=[png], speech=[str(wav)])
    assert conv.turns == [turn] and len(conv) == 1 and turn.role == "user"
    assert turn.parts == [MediaFilePart("image", png), MediaFilePart("speech", wav), TextPart("What is this?")]
    only_media = conv.add_user(image=[png])
    assert only_media.parts == [MediaFilePart("image", png)]
    assert len(conv) == 2


def test_add_user_needs_something():
    conv = Conversation()
    with pytest.raises(ValueError, match="text or at least one attachment"):
        conv.add_user()
    with pytest.raises(ValueError):
        conv.add_user("", image=[])
    assert len(conv) == 0


def test_missing_attachment_names_the_path(tmp_path):
    conv = Conversation()
    path = tmp_path / "nowhere" / "cat.png"
    with pytest.raises(MediaError) as e:
        conv.add_user("hi", image=[path])
    assert str(path) in str(e.value) and "not found" in str(e.value)
    assert len(conv) == 0  # nothing half-added


def test_folder_attachment_names_the_path(tmp_path):
    folder = tmp_path / "pictures.png"
    folder.mkdir()
    with pytest.raises(MediaError) as e:
        Conversation().add_user("hi", image=[folder])
    assert str(folder) in str(e.value) and "folder" in str(e.value)


def test_unsupported_extension_names_the_path_and_choices(tmp_path):
    path = tmp_path / "cat.xyz"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(MediaError) as e:
        Conversation().add_user("hi", image=[path])
    msg = str(e.value)
    assert str(path) in msg and ".xyz" in msg and ".png" in msg
    # the extension check is per modality: an image file is not speech
    png = tmp_path / "cat.png"
    png.write_bytes(b"x")
    with pytest.raises(MediaError, match=r"\.png"):
        Conversation().add_user("hi", speech=[png])
    # upper-case extensions are fine
    upper = tmp_path / "CAT.PNG"
    Image.new("RGB", (4, 4)).save(upper, format="PNG")
    assert media_file("image", upper) == MediaFilePart("image", upper)
    # and the file is read now: a broken picture is reported before any model runs
    with pytest.raises(MediaError, match="cannot read image"):
        media_file("image", png)


def test_unknown_modality_attachment(png):
    conv = Conversation()
    with pytest.raises(UnknownModalityError) as e:
        conv.add_user("hi", smell=[png])
    assert "smell" in str(e.value) and "image" in str(e.value)
    assert isinstance(e.value, AnyGPTError) and len(conv) == 0


def test_clear_forgets_everything(png):
    conv = Conversation()
    conv.add_user("one", image=[png])
    conv.add_assistant([TextPart("two")])
    conv.add_user("three")
    assert [t.role for t in conv.turns] == ["user", "assistant", "user"]
    conv.clear()
    assert conv.turns == [] and len(conv) == 0
    conv.add_user("again")
    assert len(conv) == 1


# ----------------------------------------------------------------------------- Reply
def test_reply_text_and_media():
    img = CodesPart("image", torch.arange(32))
    mus = CodesPart("music", torch.zeros(4, 2, dtype=torch.long))
    sp = CodesPart("speech", torch.tensor([[5, 6]]))
    reply = Reply([TextPart("  Here is "), img, TextPart("a picture "), mus, TextPart("and a tune. "), sp])
    assert reply.text == "Here is a picture and a tune."
    assert reply.media() == [img, mus, sp]
    assert reply.media("music") == [mus]
    assert reply.media("image") == [img]
    assert reply.media("video") == []
    assert reply.files == []
    assert Reply([]).text == "" and Reply([]).media() == []


# ----------------------------------------------------------------------------- AnyGPT.generate checks
def test_generate_needs_a_last_user_turn(tiny):
    conv = Conversation()
    with pytest.raises(AnyGPTError, match="user turn"):
        tiny.generate(conv)
    conv.add_user("hi")
    conv.add_assistant([TextPart("hello")])
    with pytest.raises(AnyGPTError, match="user turn"):
        tiny.generate(conv)
    assert len(conv) == 2


def test_generate_appends_the_reply(tiny):
    conv = Conversation()
    conv.add_user("Say something.")
    reply = tiny.generate(conv, settings=GenerationSettings(max_new_tokens=6), seed=0)
    assert len(conv) == 2 and conv.turns[-1].role == "assistant"
    assert conv.turns[-1].parts == reply.parts


def test_image_attachment_without_image_tokenizer_is_a_clear_error(tiny, png):
    conv = Conversation()
    conv.add_user("What is this?", image=[png])
    with pytest.raises(AnyGPTError) as e:
        tiny.generate(conv, settings=GenerationSettings(max_new_tokens=4))
    msg = str(e.value)
    assert "no image tokenizer" in msg and "tokenizers=" in msg
    assert len(conv) == 1  # no assistant turn was added


@pytest.mark.parametrize("template", ["MMGPT", "AnyGPT"])
def test_reply_stops_at_the_templates_turn_end(monkeypatch, template):
    """Whatever the LM writes after the assistant's turn end (here a made-up next user turn) is
    not part of the reply, for both templates. The LM is replaced by a stub that returns fixed ids."""
    import anygpt.model as model_module

    model, tok, layout = random_tiny()
    any_model = AnyGPT(model, tok, layout, template=template)
    end = any_model.template.bot_end
    written = tok(f"Hello there{end}\n[Human]: and another question", add_special_tokens=False)["input_ids"]
    written = written + [tok.eos_token_id]

    def fake_generate_ids(lm, input_ids, attention_mask, layout, settings, **kw):
        return torch.tensor([written])

    monkeypatch.setattr(model_module, "generate_ids", fake_generate_ids)
    conv = Conversation()
    conv.add_user("Hi.")
    reply = any_model.generate(conv, engine="hf")  # the stub replaces HF generate
    assert reply.text == "Hello there"
    assert end not in reply.text and "[Human]" not in reply.text


# ----------------------------------------------------------------------------- anygpt chat --help
def test_chat_help_has_an_example(capsys):
    assert chat("--help") == 0
    out = capsys.readouterr().out
    assert "--force-modality" in out and "random-64x2" in out and "/clear" in out


# ----------------------------------------------------------------------------- anygpt chat one-shot
def _codes_files(folder):
    return sorted(folder.glob("*.codes.txt"))


@pytest.mark.parametrize("engine", ["native", "auto"])
def test_every_engine_the_flag_offers_replies(tmp_path, capsys, layout, engine):
    """--engine takes anygpt.lm.backends' names, and the model accepts each of them (a list of
    its own once lagged behind the flag's, and `--engine native` failed after parsing)."""
    from anygpt.chat_cli import build_parser
    from anygpt.model import ENGINES

    choices = next(a.choices for a in build_parser()._actions if a.dest == "engine")
    assert set(choices) == set(ENGINES)
    rc = chat(*["--model", "random-64x2", "--message", "Draw a red circle.", "--force-modality", "image",
                "--engine", engine, "--int8", "--out", str(tmp_path / "out"), "--max-new-tokens", "40"])
    assert rc == 0, capsys.readouterr().err
    (image,) = [f for f in _codes_files(tmp_path / "out") if "image" in f.name]
    assert layout.text_to_codes("image", image.read_text(encoding="utf-8").strip()).shape == (1, 32)


def test_one_shot_forced_image_writes_32_codes(tmp_path, capsys, layout):
    out = tmp_path / "out"
    rc = chat(*["--model", "random-64x2", "--message", "Draw a red circle.",
                        "--force-modality", "image", "--out", str(out), "--max-new-tokens", "40"])
    assert rc == 0
    files = _codes_files(out)
    images = [f for f in files if "image" in f.name]
    assert images and images[0].name == "turn000-0-image.codes.txt"
    for f in images:
        text = f.read_text(encoding="utf-8")
        assert text.endswith("\n") and text.startswith("<soim>")
        codes = layout.text_to_codes("image", text.strip())
        assert codes.shape == (1, 32)
        assert codes.min() >= 0 and codes.max() < 8192
    stdout = capsys.readouterr().out
    assert "assistant:" in stdout and str(images[0]) in stdout
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files


@pytest.mark.parametrize("budget", ["23", "40", "61"])
def test_one_shot_forced_music_writes_whole_frames(tmp_path, layout, budget):
    out = tmp_path / "out"
    rc = chat(*["--model", "random-64x2", "--message", "Play jazz.", "--force-modality", "music",
                        "--out", str(out), "--max-new-tokens", budget, "--seed", budget])
    assert rc == 0
    f = out / "turn000-0-music.codes.txt"
    text = f.read_text(encoding="utf-8").strip()
    n_tokens = len(re.findall("<\U0001F3B6\\d+>", text))
    assert n_tokens > 0 and n_tokens % 4 == 0
    assert n_tokens + 1 <= int(budget)  # codes plus the end marker fit in the budget
    codes = layout.text_to_codes("music", text)  # strict: codebooks cycle 0..3 in every frame
    assert codes.shape == (4, n_tokens // 4)
    assert codes.max() < 2048


def test_one_shot_is_reproducible_with_a_seed(tmp_path):
    texts = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        assert chat(*["--model", "random-64x2", "--message", "Sing.", "--force-modality", "speech",
                              "--max-new-tokens", "20", "--seed", "7", "--out", str(out)]) == 0
        texts.append((out / "turn000-0-speech.codes.txt").read_text(encoding="utf-8"))
    assert texts[0] == texts[1]


def test_forced_image_with_a_too_small_budget_is_explained(tmp_path, capsys, layout):
    """An image is 32 codes plus its end marker; with a budget of 10 new tokens the reply cannot
    hold one. Either the budget is raised for the forced segment (and the image is complete) or
    the error says that the token budget is too small (not just 'truncated')."""
    out = tmp_path / "out"
    rc = chat(*["--model", "random-64x2", "--message", "Draw.", "--force-modality", "image",
                        "--max-new-tokens", "10", "--out", str(out)])
    err = capsys.readouterr().err
    if rc == 0:
        text = (out / "turn000-0-image.codes.txt").read_text(encoding="utf-8").strip()
        assert layout.text_to_codes("image", text).shape == (1, 32)
    else:
        assert rc == 1
        assert re.search(r"max.new.tokens|budget", err, re.I), err


def test_unconstrained_malformed_image_is_still_saved(tmp_path, capsys, layout):
    """--unconstrained reproduces the release: the reply is parsed leniently and a malformed
    segment (here an image of fewer than 32 codes, the budget being 10 tokens) is kept and marked
    repaired. Saving it must not fail: the command prints the reply and exits 0."""
    out = tmp_path / "out"
    rc = chat(*["--model", "random-64x2", "--message", "Draw.", "--force-modality", "image",
                        "--max-new-tokens", "10", "--unconstrained", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "assistant:" in captured.out
    for f in _codes_files(out):
        parts = layout.parse_text(f.read_text(encoding="utf-8").strip(), strict=False)
        assert all(p.codes.shape[0] == layout[p.modality].spec.num_codebooks
                   for p in parts if isinstance(p, CodesPart))


def test_one_shot_bad_model_folder(tmp_path, capsys):
    rc = chat(*["--model", "/nonexistent", "--message", "hi", "--out", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("anygpt chat:") and "/nonexistent" in err and "not found" in err
    assert list(tmp_path.iterdir()) == []


def test_one_shot_folder_that_is_not_a_model(tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    rc = chat(*["--model", str(folder), "--message", "hi", "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert str(folder) in err and "config.json" in err


def test_one_shot_unknown_preset_lists_choices(tmp_path, capsys):
    rc = chat(*["--model", "random-64x2", "--message", "hi", "--preset", "fastest",
                        "--out", str(tmp_path)])
    assert rc == 2  # a bad flag value is a usage error
    err = capsys.readouterr().err
    assert "fastest" in err and "text" in err and "music" in err


def test_one_shot_missing_attachment(tmp_path, capsys):
    missing = tmp_path / "gone.png"
    rc = chat(*["--model", "random-64x2", "--message", "hi", "--image", str(missing),
                        "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err


def test_one_shot_image_attachment_needs_an_image_tokenizer(tmp_path, capsys, png):
    rc = chat(*["--model", "random-64x2", "--message", "What is this?", "--image", str(png),
                        "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no image tokenizer" in err


# ----------------------------------------------------------------------------- anygpt chat interactive
@pytest.fixture
def recorded(monkeypatch):
    """Patch AnyGPT.generate to record each call's conversation (roles and texts) and delegate."""
    calls: list[list[tuple[str, str]]] = []
    original = AnyGPT.generate

    def recording_generate(self, conversation, **kw):
        calls.append([(t.role, "".join(p.text for p in t.parts if isinstance(p, TextPart)))
                      for t in conversation.turns])
        return original(self, conversation, **kw)

    monkeypatch.setattr(AnyGPT, "generate", recording_generate)
    return calls


def _interactive(monkeypatch, tmp_path, lines: list[str]) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    return chat(*["--model", "random-64x2", "--max-new-tokens", "4", "--out", str(tmp_path / "out")])


def test_interactive_keeps_history_until_clear(monkeypatch, tmp_path, capsys, recorded):
    rc = _interactive(monkeypatch, tmp_path, ["hello", "", "second", "/clear", "third", "fourth", "/quit",
                                              "never sent"])
    assert rc == 0
    assert [len(c) for c in recorded] == [1, 3, 1, 3]
    assert recorded[0] == [("user", "hello")]
    assert [r for r, _ in recorded[1]] == ["user", "assistant", "user"]
    assert recorded[1][0] == ("user", "hello") and recorded[1][2] == ("user", "second")
    assert recorded[2] == [("user", "third")]  # history dropped by /clear
    assert recorded[3][0] == ("user", "third") and recorded[3][2] == ("user", "fourth")
    out = capsys.readouterr().out
    assert out.count("assistant:") == 4 and "(history cleared)" in out


def test_interactive_bad_image_path_reports_and_continues(monkeypatch, tmp_path, capsys, recorded):
    bad = tmp_path / "missing.png"
    rc = _interactive(monkeypatch, tmp_path, [f"/image {bad}", "after the error", "/bogus", "/help", "/quit"])
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    assert re.search(rf"^anygpt chat: .*{re.escape(str(bad))}.*not found", captured.err, re.M), captured.err
    assert "unknown command /bogus" in out
    assert "/image PATH" in out
    # the failed attachment is not carried into the next message
    assert recorded == [[("user", "after the error")]]


def test_interactive_failed_turn_is_not_kept(monkeypatch, tmp_path, capsys, recorded, png):
    """An attachment the model cannot encode (no image tokenizer) gives an error; the failed user
    turn is dropped so the next message starts from a clean history."""
    rc = _interactive(monkeypatch, tmp_path, [f"/image {png}", "describe it", "just text"])
    assert rc == 0
    captured = capsys.readouterr()
    assert f"(attached {png})" in captured.out
    assert captured.err.startswith("anygpt chat: ") and "no image tokenizer" in captured.err
    assert [len(c) for c in recorded] == [1, 1]
    assert recorded[1] == [("user", "just text")]


def test_interactive_ends_at_end_of_input(monkeypatch, tmp_path, recorded):
    assert _interactive(monkeypatch, tmp_path, ["only one"]) == 0
    assert len(recorded) == 1


def test_one_shot_engines_onnx_and_auto_write_the_engines_reply(tmp_path, monkeypatch):
    """--engine onnx (ONNX Runtime) and auto sample the same tokens as the default engine."""
    monkeypatch.setenv("ANYGPT_CACHE", str(tmp_path / "cache"))
    texts = []
    for engine in ("engine", "onnx", "auto"):
        out = tmp_path / engine
        assert chat("--model", "random-64x2", "--message", "Sing.", "--force-modality", "speech",
                    "--max-new-tokens", "20", "--seed", "7", "--engine", engine, "--out", str(out)) == 0
        texts.append((out / "turn000-0-speech.codes.txt").read_text(encoding="utf-8"))
    assert texts[0] == texts[1] == texts[2]
    assert list((tmp_path / "cache" / "onnx").glob("*/decoder.onnx"))  # the export went to the cache


def test_one_shot_onnx_not_installed_names_the_extra(tmp_path, capsys, without_onnxruntime):
    assert chat("--model", "random-64x2", "--message", "Hi", "--engine", "onnx", "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err == "anygpt chat: engine 'onnx' needs onnxruntime: pip install 'anygpt[onnx]'"
