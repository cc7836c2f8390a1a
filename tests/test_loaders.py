"""anygpt.loaders: model names and folders -> AnyGPT; the registered tokenizer names. (The
shipped folders: tests/test_asset_paths.py.)"""

from __future__ import annotations

import pytest

from anygpt import loaders
from anygpt.errors import CheckpointError, UnknownModalityError, UsageError
from anygpt.modalities import load_tokenizer


def test_model_names_and_folders(tmp_path):
    assert loaders.DEFAULT_MODEL in loaders.MODEL_NAMES and "random-64x2" in loaders.MODEL_NAMES
    with pytest.raises(CheckpointError, match="model folder not found; give a folder or one of anygpt-tiny"):
        loaders.resolve_model_path(tmp_path / "nothing")
    assert loaders.resolve_model_path(tmp_path) == tmp_path
    model = loaders.load_model("random-64x2", template="AnyGPT")
    assert model.template.name == "AnyGPT" and "image" in model.layout.modalities
    assert (model.lm.config.hidden_size, model.lm.config.num_hidden_layers) == (64, 2)  # what the name says


def test_tokenizer_names_and_options():
    for modality in ("image", "speech", "music"):  # "tiny" was the old name of "compact"
        with pytest.raises(UnknownModalityError, match=f"modality '{modality}' has no tokenizer 'tiny'; available: released, compact"):
            load_tokenizer(modality, "tiny")
    with pytest.raises(UsageError, match=r"music tokenizer 'compact': .*unexpected keyword.*its options: path, device"):
        load_tokenizer("music", "compact", foo="1")
