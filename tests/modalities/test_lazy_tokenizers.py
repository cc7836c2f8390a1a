"""A loaded model loads each modality tokenizer the first time it is used, not at load (cold
start: a text reply needs no de-tokenizer); names and paths in anygpt.json are still checked
at load, and a tokenizer that does not fit the layout is still refused."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from anygpt.errors import LayoutError, UnknownModalityError
from anygpt.lm.tiny import random_tiny
from anygpt.modalities import get_modality, register_tokenizer
from anygpt.token_spec import TokenSpec
from anygpt.model import AnyGPT

CALLS: list[str] = []


def stub(spec: TokenSpec):
    """A stand-in tokenizer: what AnyGPT checks of one is its token_spec."""
    return SimpleNamespace(token_spec=spec)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    lm, tok, layout = random_tiny(seed=0)
    image = layout["image"].spec

    def load_fitting():
        CALLS.append("fits")
        return stub(image)

    def load_misfit():
        CALLS.append("misfit")
        return stub(TokenSpec(image.name, image.prefix, image.start, image.end, image.codebook_size + 1,
                              image.num_codebooks, image.frames_per_item))

    register_tokenizer("image", "test-lazy-fits", load_fitting)
    register_tokenizer("music", "test-lazy-misfit", load_misfit)
    model = AnyGPT(lm, tok, layout)
    model.tokenizer_entries = {"image": {"loader": "test-lazy-fits"}, "music": {"loader": "test-lazy-misfit"}}
    path = model.save_pretrained(tmp_path_factory.mktemp("model"))
    yield path
    get_modality("image").tokenizer_loaders.pop("test-lazy-fits", None)
    get_modality("music").tokenizer_loaders.pop("test-lazy-misfit", None)


def test_tokenizers_load_on_first_use(folder):
    CALLS.clear()
    model = AnyGPT.from_pretrained(folder)
    assert CALLS == [] and model.tokenizers.loaded() == []
    assert set(model.tokenizers) == {"image", "music"} and "image" in model.tokenizers and len(model.tokenizers) == 2
    first = model.tokenizers["image"]
    assert model.tokenizers["image"] is first and CALLS == ["fits"]  # loaded once
    assert model.tokenizers.loaded() == ["image"]


def test_a_tokenizer_that_does_not_fit_is_refused_when_loaded(folder):
    model = AnyGPT.from_pretrained(folder)
    with pytest.raises(LayoutError, match="music tokenizer writes"):
        model.tokenizers["music"]
    assert "music" not in model.tokenizers.loaded()


def test_unknown_tokenizer_name_fails_at_load(folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "anygpt.json").read_text())
    cfg["tokenizers"]["image"]["loader"] = "no-such-tokenizer"
    (bad / "anygpt.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownModalityError, match="no tokenizer 'no-such-tokenizer'"):
        AnyGPT.from_pretrained(bad)


def test_given_tokenizers_replace_the_folders_without_loading_them(folder):
    CALLS.clear()
    lm_layout_image = AnyGPT.from_pretrained(folder).layout["image"].spec
    mine = stub(lm_layout_image)
    model = AnyGPT.from_pretrained(folder, tokenizers={"image": mine})
    assert model.tokenizers["image"] is mine and CALLS == []
