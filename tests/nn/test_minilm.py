"""anygpt.nn.minilm: the frozen sentence encoder, loaded once per process from its PyPI package."""

from __future__ import annotations

import numpy as np

from anygpt.nn import minilm as minilm_module
from anygpt.nn.minilm import minilm


def test_loaded_once_and_puts_paraphrases_closer_than_other_sentences(monkeypatch):
    model = minilm()
    monkeypatch.setattr(minilm_module, "_load_minilm", lambda: (_ for _ in ()).throw(AssertionError("loaded twice")))
    assert minilm() is model
    e = model.encode(["a red circle on a white background", "a white background with a red circle",
                      "the stock market fell sharply today"], normalize_embeddings=True)
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.3
