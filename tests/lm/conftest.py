"""Fixtures of the engine tests: random tiny LLaMAs in our layout (seeded; one thread: tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from anygpt.lm.tiny import random_tiny
from anygpt.token_spec import TokenSpec

# small codebooks so that a random model enters and leaves segments often
COMPACT = [
    TokenSpec("image", "\U0001F440", "<soim>", "<eoim>", 64, 1, 8),
    TokenSpec("speech", "\U0001F5E3\uFE0F", "<sosp>", "<eosp>", 32, 1),
    TokenSpec("music", "\U0001F3B6", "<somu>", "<eomu>", 16, 4),
]


@pytest.fixture(scope="session")
def compact_lm():
    """(model, tokenizer, layout): hidden 64 x 2 layers, 4 heads, compact codebooks."""
    return random_tiny(COMPACT, seed=3, text_vocab=500)


@pytest.fixture(scope="session")
def gqa_lm():
    """A grouped-query LLaMA (2 key/value heads for 4 query heads) in the same layout."""
    return random_tiny(COMPACT, seed=4, text_vocab=500, kv_heads=2)


@pytest.fixture(scope="module")
def temporary_export_cache(tmp_path_factory):
    """Backends' exports (ONNX, GGUF) go to a temporary cache folder, never the user's."""
    before = os.environ.get("ANYGPT_CACHE")
    os.environ["ANYGPT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("ANYGPT_CACHE")
    else:
        os.environ["ANYGPT_CACHE"] = before
