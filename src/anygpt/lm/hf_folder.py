"""A model folder's files read one by one: its JSON files (a damaged one named), and its LM and
text tokenizer through transformers (imported only here, when called)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from anygpt.errors import CheckpointError


def read_json(file: Path) -> dict:
    """A JSON file of a model folder -> its object; CheckpointError naming the file when it
    does not parse (transformers' own error does not name it)."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); the model folder is damaged") from None


def load_text_tokenizer_hf(path: Path, *, use_fast: bool = True):
    """-> the folder's HF tokenizer (pad id 0 if it has none, left padding)."""
    import anygpt.lm.hf_imports  # noqa: F401  (before transformers: no scikit-learn)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=use_fast, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; the message names the folder
        raise CheckpointError(f"{path}: its tokenizer files cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = 0
    tokenizer.padding_side = "left"
    return tokenizer


def load_lm_hf(path: Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """-> the folder's HF causal LM in eval mode."""
    import anygpt.lm.hf_imports  # noqa: F401  (before transformers: no scikit-learn)
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
    except Exception as e:  # noqa: BLE001 - as above
        raise CheckpointError(f"{path}: the model cannot be loaded from config.json and its weights "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
