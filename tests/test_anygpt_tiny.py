"""The shipped default model, anygpt-tiny: its files, that `anygpt chat` writes real media with it,
and that it learned something (its weights are not random)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image

from anygpt import asset_paths, cli, loaders
from anygpt.data.scenes import caption, render_scene, sample_scene
from anygpt.instructions import instruction_pool
from anygpt.parts import MediaFilePart
from anygpt.templates import pretraining_prompt


@pytest.fixture(scope="module")
def model():
    return loaders.load_model("anygpt-tiny")


def test_shipped_folder_is_complete_and_small():
    folder = asset_paths.ANYGPT_TINY_DIR
    for name in ("config.json", "anygpt.json", "model.safetensors", "README.md"):
        assert (folder / name).is_file(), f"{folder / name} is missing from this checkout"
    assert (folder / "model.safetensors").stat().st_size <= 40 * 2**20
    tokenizers = json.loads((folder / "anygpt.json").read_text())["tokenizers"]
    assert {m: tokenizers[m]["loader"] for m in ("image", "speech", "music")} == \
        {"image": "compact", "speech": "phones", "music": "compact"}


def test_it_is_the_default(model):
    assert loaders.DEFAULT_MODEL == "anygpt-tiny"
    assert set(model.tokenizers) == {"image", "speech", "music"}


def _codes_nll(model, text: str, codes) -> float:
    """Mean negative log-likelihood (nats) of an image's codes after its caption, as pretrained."""
    prompt = pretraining_prompt("from_text", instruction_pool("image", "from_text")[0], text=text)
    head = model.sequence_encoder.encode(prompt, bos=True)
    full = model.sequence_encoder.encode(prompt + [codes], bos=True)
    assert torch.equal(full[: len(head)], head)
    with torch.no_grad():
        logits = model.lm(input_ids=full[None]).logits[0, len(head) - 1 : -1].float()
    return float(F.cross_entropy(logits, full[len(head):]))


def test_images_follow_their_captions(model, tmp_path):
    """The codes of a freshly drawn scene are likelier after its own caption than after another
    scene's, and more than a nat likelier than uniform over the image codebook: the LM links
    words to pictures."""
    rng = random.Random(2026)
    specs = [sample_scene(rng, heldout=False) for _ in range(6)]
    texts = [caption(s, rng) for s in specs]
    codes = []
    for i, spec in enumerate(specs):
        path = tmp_path / f"scene{i}.png"
        render_scene(spec).save(path)
        codes.append(model.encode_media(MediaFilePart("image", path)))
    own = np.mean([_codes_nll(model, t, c) for t, c in zip(texts, codes)])
    other = np.mean([_codes_nll(model, t, c) for t, c in zip(texts[1:] + texts[:1], codes)])
    assert own < other
    assert own < math.log(model.layout["image"].spec.codebook_size) - 1.0


@pytest.mark.parametrize("modality, suffix", [("image", ".png"), ("speech", ".wav"), ("music", ".wav")])
def test_chat_writes_media_with_the_default_model(tmp_path, modality, suffix):
    out = tmp_path / "out"
    ask = {"image": "Draw a red circle.", "speech": "Say hello.", "music": "Play a slow tune in C major."}[modality]
    assert cli.main(["chat", "--message", ask, "--force-modality", modality, "--out", str(out)]) == 0
    files = sorted(out.rglob(f"*{suffix}"))
    assert files, f"no {suffix} written under {out}: {sorted(out.rglob('*'))}"
    if suffix == ".png":
        with Image.open(files[0]) as im:
            assert im.size == (64, 64)
    else:
        audio, rate = sf.read(files[0])
        assert len(audio) > 0.2 * rate and np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert not list(out.rglob("*.tmp*"))


def test_the_readme_request_draws_what_it_asks(tmp_path):
    """The README's first command: anygpt-tiny draws greedily with guidance 1.5 through its
    text-to-image instruction (its anygpt.json), and the pixel checker reads the request back."""
    from anygpt.eval.scene_checker import read_scene

    folder = json.loads((asset_paths.ANYGPT_TINY_DIR / "anygpt.json").read_text())
    assert folder["generation"] == {"image": {"do_sample": False, "cfg_scale": 1.5}}
    assert folder["instruction_prompts"] == {"image": ["from_text", "to_text"], "speech": ["to_text"]}
    out = tmp_path / "out"
    assert cli.main(["chat", "--message", "Draw a big red circle in the middle on a white background.",
                     "--out", str(out)]) == 0
    (png,) = out.rglob("*.png")
    with Image.open(png) as im:
        scene = read_scene(im)
    assert scene["background"] == "white"
    assert [(o["color"], o["shape"], o["size"], o["position"]) for o in scene["objects"]] == \
        [("red", "circle", "large", "center")]
