"""anygpt.modalities.registry and the built-in entries (text, image, speech, music): the
vocabulary order, each modality's facts, and loaders by function or by "module:function"."""

from __future__ import annotations

import pytest

from anygpt.errors import UnknownModalityError, UsageError
from anygpt.modalities import registry
from anygpt.modalities.image import IMAGE
from anygpt.modalities.music import MUSIC
from anygpt.modalities.specs import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, TEXT_EXTENSIONS
from anygpt.modalities.speech import SPEECH
from anygpt.modalities.text import TEXT
from grid_tokenizer import GridTokenizer


def test_built_in_modalities_in_the_release_vocabulary_order():
    assert registry.modality_names() == ["image", "speech", "music"]
    assert registry.modality_names(with_text=True) == ["text", "image", "speech", "music"]
    assert [s.name for s in registry.released_specs()] == ["image", "speech", "music"]
    assert (TEXT.kind, TEXT.released_spec, TEXT.file_extensions) == ("text", None, TEXT_EXTENSIONS)
    assert (IMAGE.kind, IMAGE.file_extensions) == ("image", IMAGE_EXTENSIONS)
    assert SPEECH.kind == MUSIC.kind == "audio" and SPEECH.file_extensions == AUDIO_EXTENSIONS
    assert sorted(IMAGE.tokenizer_loaders) == ["compact", "grid", "released"]
    for info in (IMAGE, SPEECH, MUSIC):
        assert {"compact", "released"} <= set(info.tokenizer_loaders)
        assert info.tokenizer_loaders["compact"].startswith("anygpt.modalities.")  # imported when first used


@pytest.fixture
def sensor():
    info = registry.register_modality(registry.ModalityInfo("sensor", "audio", None, (".csv",)))
    yield info
    registry.unregister_modality("sensor")


def test_registering_and_its_refusals(sensor):
    assert registry.get_modality("sensor") is sensor and "sensor" in registry.modality_names()
    with pytest.raises(ValueError, match="modality 'sensor' is already registered"):
        registry.register_modality(registry.ModalityInfo("sensor", "audio", None))
    with pytest.raises(ValueError, match="kind must be text, audio or image, not 'smell'"):
        registry.register_modality(registry.ModalityInfo("nose", "smell", None))
    with pytest.raises(UnknownModalityError, match="unknown modality 'nose'; registered: text, image, speech, music, sensor"):
        registry.get_modality("nose")
    assert registry.register_modality(registry.ModalityInfo("sensor", "image", None), replace=True).kind == "image"


def test_loaders_by_function_and_by_string(sensor):
    registry.register_tokenizer("sensor", "fn", lambda size=8: ("fn", size))
    registry.register_tokenizer("sensor", "str", "grid_tokenizer:GridTokenizer")
    assert registry.load_tokenizer("sensor", "fn", size=3) == ("fn", 3)
    assert isinstance(registry.load_tokenizer("sensor", "str"), GridTokenizer)
    with pytest.raises(UnknownModalityError, match="modality 'sensor' has no tokenizer 'other'; available: fn, str"):
        registry.load_tokenizer("sensor", "other")
    with pytest.raises(UsageError, match=r"sensor tokenizer 'fn': .*unexpected keyword.*its options: size"):
        registry.load_tokenizer("sensor", "fn", colour="red")
