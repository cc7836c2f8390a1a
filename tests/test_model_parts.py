"""anygpt.model_parts: a model folder's parts resolved once (LM, text tokenizer, layout, the
modality tokenizers its anygpt.json names, template), and AnyGPT built from them."""

from __future__ import annotations

import pytest
import torch

from anygpt.errors import CheckpointError
from anygpt.lm.tiny import random_tiny
from anygpt.modalities import get_modality
from anygpt.model import AnyGPT
from anygpt.model_parts import ModelParts
from anygpt.parts import CodesPart, TextPart
from grid_tokenizer import GridTokenizer


@pytest.fixture
def grid_loader(monkeypatch):
    """Image tokenizer "test-grid", counting its loads."""
    calls = []

    def load(path=None):
        calls.append(path)
        return GridTokenizer()

    monkeypatch.setitem(get_modality("image").tokenizer_loaders, "test-grid", load)
    return calls


@pytest.fixture
def folder(tmp_path, grid_loader):
    lm, tok, layout = random_tiny([GridTokenizer().token_spec], seed=2, text_vocab=400)
    model = AnyGPT(lm, tok, layout, tokenizers={"image": GridTokenizer()}, template="AnyGPT")
    model.tokenizer_entries = {"image": {"loader": "test-grid"}}
    return model.save_pretrained(tmp_path / "model")


def test_a_folder_resolves_to_its_parts(folder, grid_loader):
    parts = ModelParts.from_folder(folder)
    assert parts.folder == folder and parts.template == "AnyGPT"
    assert isinstance(parts.tokenizers["image"], GridTokenizer) and grid_loader == [None]
    assert parts.tokenizer_entries == {"image": {"loader": "test-grid"}}
    assert parts.layout.modalities == ["image"] and parts.layout["image"].spec.codebook_size == 16
    assert parts.lm.get_input_embeddings().weight.shape[0] == len(parts.text_tokenizer)
    assert ModelParts.from_folder(folder, template="MMGPT").template == "MMGPT"


def test_a_given_tokenizer_replaces_the_named_one_without_loading_it(folder, grid_loader):
    mine = GridTokenizer()
    parts = ModelParts.from_folder(folder, tokenizers={"image": mine})
    assert parts.tokenizers["image"] is mine and grid_loader == []


def test_from_pretrained_is_from_parts(folder):
    model = AnyGPT.from_pretrained(folder)
    again = AnyGPT.from_parts(ModelParts.from_folder(folder))
    assert model.template.name == again.template.name == "AnyGPT"
    assert model.tokenizer_entries == again.tokenizer_entries == {"image": {"loader": "test-grid"}}
    codes = torch.arange(16).reshape(1, 16)
    prompt = [TextPart("a picture"), CodesPart("image", codes)]
    assert torch.equal(model.sequence_encoder.encode(prompt), again.sequence_encoder.encode(prompt))


def test_a_missing_folder_names_the_loader_of_shipped_names(tmp_path):
    with pytest.raises(CheckpointError, match="model folder not found .*anygpt.loaders.load_model"):
        ModelParts.from_folder(tmp_path / "anygpt-tiny")
