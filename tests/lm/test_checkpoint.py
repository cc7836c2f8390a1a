import json
import shutil

import pytest
import torch

from anygpt.conversation import Conversation
from anygpt.errors import CheckpointError
from anygpt.layout import TokenLayout
from anygpt.lm.generation import get_preset
from anygpt.model import AnyGPT
from anygpt.modalities import released_specs
from released_folder import SP_VOCAB, write_released_folder


def test_folder_has_the_released_files(released_folder):
    names = {p.name for p in released_folder.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json",
            "special_tokens_map.json", "added_tokens.json", "pytorch_model.bin.index.json"} <= names
    added = json.loads((released_folder / "added_tokens.json").read_text(encoding="utf-8"))
    assert added["[Human]"] == SP_VOCAB and added["<\U0001F5E3\uFE0F0>"] == SP_VOCAB + 4 + 8194
    assert len(added) == 17420


@pytest.mark.parametrize("safetensors", [False, True])
def test_released_folder_loads_through_the_user_call(tmp_path, sp_model, released_folder, safetensors):
    folder = released_folder if not safetensors else write_released_folder(tmp_path / "st", sp_model, safetensors=True)
    model = AnyGPT.from_pretrained(folder)
    assert type(model.tokenizer).__name__ == "LlamaTokenizer"  # the release's slow tokenizer
    assert model.template.name == "MMGPT"
    planned = TokenLayout.plan(SP_VOCAB, released_specs())
    assert {n: r.code_offset for n, r in model.layout.ranges.items()} == {n: r.code_offset for n, r in planned.ranges.items()}
    # weights are the saved ones
    state = model.lm.state_dict()
    assert state["model.embed_tokens.weight"].shape == (SP_VOCAB + 17420, 32)
    conv = Conversation()
    conv.add_user("Please generate an image.")
    reply = model.generate(conv, settings=get_preset("image").with_(max_new_tokens=40), force_modality="image", seed=0)
    assert reply.media("image")[0].codes.shape == (1, 32)
    assert conv.turns[-1].role == "assistant"


def test_missing_pieces_are_named(tmp_path, released_folder):
    with pytest.raises(CheckpointError, match="not found"):
        AnyGPT.from_pretrained(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(released_folder, broken)
    for f in broken.glob("pytorch_model*"):
        f.unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        AnyGPT.from_pretrained(broken)
    (broken / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        AnyGPT.from_pretrained(broken)


def test_our_folder_round_trips(tmp_path):
    from anygpt.lm.tiny import random_tiny

    lm, tok, layout = random_tiny(seed=4)
    model = AnyGPT(lm, tok, layout, template="AnyGPT")
    model.save_pretrained(tmp_path / "ours")
    assert (tmp_path / "ours" / "model.safetensors").exists()
    loaded = AnyGPT.from_pretrained(tmp_path / "ours")
    assert loaded.template.name == "AnyGPT"
    assert loaded.layout.specs == layout.specs
    for k, v in lm.state_dict().items():
        assert torch.equal(v, loaded.lm.state_dict()[k]), k
