"""Our model folders load without transformers (anygpt.lm.plain_llama, plain_tokenizer) and
give exactly what transformers' objects give: the same token ids, the same tensors, the
same replies."""

import json
import subprocess
import sys

import pytest
import torch

from anygpt.asset_paths import shipped_model_folder
from anygpt.conversation import Conversation
from anygpt.lm.checkpoint import load_lm
from anygpt.lm.generation import get_preset
from anygpt.lm.plain_llama import PlainLlama
from anygpt.lm.plain_tokenizer import PlainTokenizer
from anygpt.lm.tiny import random_tiny
from anygpt.model import AnyGPT

TEXTS = ["Hello, who are you?", "a red circle <soim><🖼️12><eoim> at   the top\n", "<eoh> and <eos>",
         "ünïcode 日本 🎵", " leading space", ""]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random LLaMA in our folder format (safetensors, tokenizer.json, anygpt.json)."""
    lm, tok, layout = random_tiny(seed=3)
    path = tmp_path_factory.mktemp("plain") / "model"
    AnyGPT(lm, tok, layout).save_pretrained(path)
    return path


def _ask(text: str) -> Conversation:
    conv = Conversation()
    conv.add_user(text)
    return conv


def test_the_shipped_tokenizer_reads_the_same_without_transformers():
    path = shipped_model_folder("anygpt-tiny")
    plain = PlainTokenizer.from_folder(path)
    hf = plain.to_hf()
    for text in TEXTS:
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert plain(text)["input_ids"] == ids, text
        assert plain(text, split_special_tokens=True)["input_ids"] == \
            hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"], text
        assert plain.decode(ids) == hf.decode(ids)
        assert plain.decode(torch.tensor(ids)) == hf.decode(ids)
    assert plain.get_vocab() == hf.get_vocab() and plain.get_added_vocab() == hf.get_added_vocab()
    assert len(plain) == len(hf)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(plain, name) == getattr(hf, name), name
    for token in ("<eoh>", "<s>", "no such token"):
        assert plain.convert_tokens_to_ids(token) == hf.convert_tokens_to_ids(token)


def test_a_plain_folder_holds_the_same_tensors_and_gives_the_same_replies(folder):
    lm, tok, layout, _ = load_lm(folder, plain=True)
    hf_lm, hf_tok, hf_layout, _ = load_lm(folder, plain=False)
    assert isinstance(lm, PlainLlama) and isinstance(tok, PlainTokenizer)
    assert type(hf_lm).__name__ == "LlamaForCausalLM"
    assert layout.ranges.keys() == hf_layout.ranges.keys()
    assert all(layout.ranges[n].code_offset == hf_layout.ranges[n].code_offset for n in layout.ranges)
    state, hf_state = lm.state_dict(), hf_lm.state_dict()
    assert state.keys() == hf_state.keys()
    assert all(torch.equal(state[k], hf_state[k]) for k in state)
    assert torch.equal(lm.model.rotary_emb.inv_freq, hf_lm.model.rotary_emb.inv_freq)

    plain_model, hf_model = AnyGPT(lm, tok, layout), AnyGPT(hf_lm, hf_tok, hf_layout)
    for force in (None, "image"):
        settings = get_preset("image" if force else "text").with_(max_new_tokens=40, do_sample=False)
        want = hf_model.generate(_ask("Draw a red circle."), settings=settings, engine="hf", force_modality=force)
        assert plain_model.generate(_ask("Draw a red circle."), settings=settings, force_modality=force) == want
        # the HF path upgrades the plain model in place, sharing its tensors
        assert plain_model.generate(_ask("Draw a red circle."), settings=settings, force_modality=force,
                                    engine="hf") == want
    assert type(plain_model.lm).__name__ == "LlamaForCausalLM"
    assert plain_model.lm.lm_head.weight.data_ptr() == lm.lm_head.weight.data_ptr()
    assert all(p.requires_grad for p in plain_model.lm.parameters())  # trainable, as from_pretrained's


def test_a_plain_model_saves_a_folder_that_loads_the_same(folder, tmp_path):
    lm, tok, layout, _ = load_lm(folder, plain=True)
    AnyGPT(lm, tok, layout).save_pretrained(tmp_path / "again")
    again, tok2, _, _ = load_lm(tmp_path / "again", plain=True)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in lm.state_dict().items())
    assert tok2.get_vocab() == tok.get_vocab()


def test_a_folder_the_plain_reader_cannot_hold_loads_through_transformers(folder, tmp_path):
    import shutil

    scaled = tmp_path / "scaled"
    shutil.copytree(folder, scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "linear", "factor": 2.0}
    (scaled / "config.json").write_text(json.dumps(config))
    lm, tok, _, _ = load_lm(scaled, plain=True)
    assert type(lm).__name__ == "LlamaForCausalLM"  # LeanLlama would not scale the positions
    assert isinstance(tok, PlainTokenizer)  # the tokenizer is still ours


def test_a_chat_reply_imports_no_transformers(folder):
    code = (f"import sys\nfrom anygpt.loaders import load_model\nfrom anygpt.conversation import Conversation\n"
            f"from anygpt.lm.generation import get_preset\nm = load_model({str(folder)!r})\n"
            f"c = Conversation()\nc.add_user('Hello')\n"
            f"m.generate(c, settings=get_preset('text').with_(max_new_tokens=8), seed=0)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in ('transformers', 'accelerate')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
