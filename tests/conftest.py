"""Shared fixtures (the helpers live in released_folder.py, a name no other test folder uses)."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch
from transformers import LlamaTokenizer

from released_folder import train_sentencepiece, write_released_folder


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a shared CPU: one torch thread is faster and steadier than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory) -> Path:
    return train_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture
def llama_tokenizer(sp_model) -> LlamaTokenizer:
    """A fresh slow LLaMA tokenizer (what the release uses), not yet expanded."""
    return LlamaTokenizer(vocab_file=str(sp_model), legacy=True)


@pytest.fixture(scope="session")
def released_folder(tmp_path_factory, sp_model) -> Path:
    return write_released_folder(tmp_path_factory.mktemp("AnyGPT-chat"), sp_model, safetensors=False)


def block_import(monkeypatch, module: str) -> None:
    """Imports of `module` fail from now on (until the test ends), as on a machine without it."""
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == module:
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


@pytest.fixture
def without_onnxruntime(monkeypatch):
    """Imports of onnxruntime fail as on a machine without the `onnx` extra."""
    block_import(monkeypatch, "onnxruntime")


@pytest.fixture
def without_llama_cpp(monkeypatch):
    """Imports of llama_cpp fail as on a machine without the `llamacpp` extra."""
    block_import(monkeypatch, "llama_cpp")
