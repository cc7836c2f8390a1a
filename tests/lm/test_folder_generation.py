"""What a model folder says about generating (anygpt.json's "generation" and
"instruction_replies"): saved and read back, used as the presets' defaults, and a plain text
request for an instruction-reply modality written after the text-to-media instruction."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from anygpt.conversation import Conversation
from anygpt.instructions import instruction_pool
from anygpt.lm.generation import get_preset
from anygpt.loaders import random_media_model
from anygpt.model import AnyGPT
from anygpt.parts import CodesPart
from anygpt.templates import pretraining_prompt


def _codes(parts) -> torch.Tensor:
    return next(p.codes for p in parts if isinstance(p, CodesPart))


def test_folder_defaults_round_trip_and_route_a_text_request(tmp_path):
    model = random_media_model(seed=3)
    model.generation_defaults = {"image": {"do_sample": False, "cfg_scale": 2.0}}
    model.instruction_replies = ["image"]
    folder = model.save_pretrained(tmp_path / "m")
    saved = json.loads((folder / "anygpt.json").read_text())
    assert saved["generation"] == {"image": {"do_sample": False, "cfg_scale": 2.0}}
    assert saved["instruction_replies"] == ["image"]
    again = AnyGPT.from_pretrained(folder)
    assert again.preset("image") == get_preset("image").with_(do_sample=False, cfg_scale=2.0)
    assert again.preset("speech") == get_preset("speech")

    request = "Draw a red circle."
    conv = Conversation()
    conv.add_user(request)
    routed = again.generate(conv, preset="image", force_modality="image", seed=0)
    instruction = pretraining_prompt("from_text", instruction_pool("image", "from_text")[0], text=request)
    assert torch.equal(_codes(routed.parts), _codes(again.complete(instruction, preset="image", force_modality="image")))
    assert conv.turns[-1].role == "assistant"  # the reply joins the conversation as any other

    again.instruction_replies = []  # the same request through the chat template draws otherwise
    conv = Conversation()
    conv.add_user(request)
    assert not torch.equal(_codes(again.generate(conv, preset="image", force_modality="image", seed=0).parts),
                           _codes(routed.parts))


def test_a_request_with_an_attachment_keeps_the_chat_template(tmp_path):
    model = random_media_model(seed=3)
    model.instruction_replies = ["image"]
    png = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(png)
    conv = Conversation()
    conv.add_user("Draw this again.", image=[png])
    marker = model.layout["image"].spec.start
    assert model._chat_prompt(conv, "image") == model.template.prompt(conv.turns, force_modality_start=marker)
    conv = Conversation()
    conv.add_user("Draw a red circle.")
    assert model._chat_prompt(conv, "speech") == model.template.prompt(conv.turns, force_modality_start=model.layout["speech"].spec.start)
