"""What a model folder says about generating (anygpt.json's "generation" and
"instruction_prompts"): saved and read back, used as the presets' defaults, and a single
request written as the pretraining instruction of its ability where the folder routes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from anygpt.conversation import Conversation
from anygpt.instructions import instruction_pool
from anygpt.lm.generation import get_preset
from anygpt.loaders import random_media_model
from anygpt.model import AnyGPT
from anygpt.parts import CodesPart, MediaFilePart, TextPart
from anygpt.templates import pretraining_prompt

ROUTES = {"image": ["from_text", "to_text"], "speech": ["to_text"]}


@pytest.fixture(scope="module")
def model():
    return random_media_model(seed=3)


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(path)
    return path


def _codes(parts) -> torch.Tensor:
    return next(p.codes for p in parts if isinstance(p, CodesPart))


def _ask(*parts_or_text, **attachments) -> Conversation:
    conv = Conversation()
    conv.add_user(*parts_or_text, **attachments)
    return conv


def test_folder_defaults_round_trip_and_route_a_drawing_request(model, tmp_path):
    model.generation_defaults, model.instruction_prompts = {"image": {"do_sample": False, "cfg_scale": 2.0}}, ROUTES
    try:
        folder = model.save_pretrained(tmp_path / "m")
    finally:
        model.generation_defaults, model.instruction_prompts = {}, {}
    saved = json.loads((folder / "anygpt.json").read_text())
    assert saved["generation"] == {"image": {"do_sample": False, "cfg_scale": 2.0}}
    assert saved["instruction_prompts"] == ROUTES
    again = AnyGPT.from_pretrained(folder)
    assert again.preset("image") == get_preset("image").with_(do_sample=False, cfg_scale=2.0)
    assert again.preset("speech") == get_preset("speech")

    request = "Draw a red circle."
    conv = _ask(request)
    routed = again.generate(conv, preset="image", force_modality="image", seed=0)
    instruction = pretraining_prompt("from_text", instruction_pool("image", "from_text")[0], text=request)
    assert torch.equal(_codes(routed.parts), _codes(again.complete(instruction, preset="image", force_modality="image")))
    assert conv.turns[-1].role == "assistant"  # the reply joins the conversation as any other

    again.instruction_prompts = {}  # the same request through the chat template draws otherwise
    assert not torch.equal(_codes(again.generate(_ask(request), preset="image", force_modality="image", seed=0).parts),
                           _codes(routed.parts))


def test_a_request_with_one_attachment_is_read_through_its_to_text_instruction(model, png):
    model.instruction_prompts = ROUTES
    try:
        prompt = model._chat_prompt(_ask("Describe this image.", image=[png]), "text")
        assert prompt == pretraining_prompt("to_text", instruction_pool("image", "to_text")[0],
                                            media=MediaFilePart("image", png))
        # no route for this attachment's modality, a media reply, or no words: the chat template
        for conv, reply in ((_ask("What is this?", image=[png]), "image"), (_ask(image=[png]), "text"),
                            (_ask("Draw a red circle."), "speech"), (_ask("Draw this again.", image=[png]), "image")):
            marker = model.layout[reply].spec.start if reply != "text" else None
            assert model._chat_prompt(conv, reply) == model.template.prompt(conv.turns, force_modality_start=marker)
        reply = model.generate(_ask("Describe this image.", image=[png]), force_modality="text", seed=0)
        assert all(isinstance(p, TextPart) for p in reply.parts)
    finally:
        model.instruction_prompts = {}
