"""anygpt.eval.systems: the reference (oracle) system, turning a system's outputs into files,
loading systems and tokenizers by name, and the copy tokenizer (the ceiling of every metric)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from anygpt.eval.benchmarks import EvalItem
from anygpt.eval.systems import (CopyTokenizer, ReferenceSystem, SystemLoadError, load_system,
                                 load_tokenizer_for_eval, materialise_audio, materialise_image)


def answer(**options):  # a factory named by "module:function"
    return ("answered", options)


@pytest.fixture
def items(tmp_path):
    out = []
    for i, (text, speaker) in enumerate([("hello there", "a"), ("hello there", "b"), ("a red circle", None)]):
        path = tmp_path / f"m{i}.wav"
        path.write_bytes(b"")
        out.append(EvalItem(id=f"m{i}", path=path, text=text, speaker=speaker, captions=[text, "other"]))
    return out


def test_the_reference_system_answers_with_the_ground_truth(items, tmp_path):
    ref = ReferenceSystem(items)
    assert ref.transcribe(items[1].path) == "hello there"
    assert ref.caption(items[2].path) == "a red circle" and ref.describe_music(items[2].path) == "a red circle"
    assert ref.draw("a red circle", tmp_path / "x.png") == items[2].path
    assert ref.speak("hello there", None, tmp_path / "o.wav") == items[0].path
    ref.prompt_speakers[str(tmp_path / "p.wav")] = "b"  # the prompt's speaker picks that speaker's clip
    assert ref.speak("hello there", tmp_path / "p.wav", tmp_path / "o.wav") == items[1].path
    with pytest.raises(SystemLoadError, match="is not an item of this evaluation"):
        ref.transcribe(tmp_path / "elsewhere.wav")
    with pytest.raises(SystemLoadError, match="no item with text 'unknown'"):
        ref.draw("unknown", tmp_path / "x.png")


def test_outputs_become_files(tmp_path):
    wav = materialise_audio((np.zeros(800, dtype=np.float32), 8000), tmp_path / "a.wav")
    assert sf.info(str(wav)).frames == 800 and sf.info(str(wav)).samplerate == 8000
    assert materialise_audio(wav, tmp_path / "unused.wav") == wav
    with pytest.raises(SystemLoadError, match="which does not exist"):
        materialise_audio(tmp_path / "missing.wav", tmp_path / "b.wav")
    with pytest.raises(SystemLoadError, match=r"audio output must be a path or \(samples, sample_rate\), got list"):
        materialise_audio([0.0], tmp_path / "b.wav")
    png = materialise_image(Image.new("RGB", (4, 3), "red"), tmp_path / "i.png")
    assert Image.open(png).size == (4, 3) and Image.open(png).getpixel((0, 0)) == (255, 0, 0)
    from_tensor = materialise_image(torch.zeros(3, 5, 6), tmp_path / "t.png")
    assert Image.open(from_tensor).size == (6, 5)


def test_systems_and_tokenizers_by_name(items):
    assert isinstance(load_system("reference", items), ReferenceSystem)
    assert load_system("test_systems:answer", items, x=1) == ("answered", {"x": 1})
    with pytest.raises(SystemLoadError, match="unknown system 'oracle'; use a built-in name or 'package.module:factory'"):
        load_system("oracle", items)
    with pytest.raises(SystemLoadError, match="cannot import 'no_such_module'"):
        load_system("no_such_module:f", items)
    with pytest.raises(SystemLoadError, match="'test_systems' has no attribute 'nothing'"):
        load_system("test_systems:nothing", items)
    with pytest.raises(SystemLoadError, match="modality 'image' has no tokenizer 'nope'"):
        load_tokenizer_for_eval("nope", "image")
    assert isinstance(load_tokenizer_for_eval("copy", "speech", sample_rate=8000), CopyTokenizer)


def test_the_copy_tokenizer_reconstructs_exactly():
    audio = CopyTokenizer("speech", sample_rate=8000)
    wav = torch.tensor([[[0.0, 0.5, -1.0, 1.0]]])
    codes = audio.encode(wav)
    assert codes.tolist() == [[[0, 16384, -32767, 32767]]]
    assert torch.allclose(audio.decode(codes), wav, atol=1 / 32767)
    image = CopyTokenizer("image", image_size=(2, 2))
    pixels = torch.tensor([[[[0.0, 1.0], [0.5, 0.2]]] * 3]).reshape(1, 3, 2, 2)
    codes = image.encode(pixels)
    assert codes.shape == (1, 3, 4) and torch.allclose(image.decode(codes), pixels, atol=1 / 255)
