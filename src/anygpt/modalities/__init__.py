"""Modalities: the tokenizer interface, the registry and the built-in entries.

Importing this package registers text, image, speech and music, in the release's vocabulary
order. A new modality is a module like `music.py` plus an import here or in user code.
"""

from anygpt.modalities import text, image, speech, music  # noqa: F401  (registration order matters)
from anygpt.modalities.base import ModalityTokenizer
from anygpt.modalities.registry import (
    ModalityInfo,
    get_modality,
    load_tokenizer,
    modality_names,
    register_modality,
    register_tokenizer,
    released_specs,
    unregister_modality,
)
from anygpt.token_spec import TokenSpec

__all__ = [
    "ModalityInfo", "ModalityTokenizer", "TokenSpec", "get_modality", "load_tokenizer",
    "modality_names", "register_modality", "register_tokenizer", "released_specs",
    "unregister_modality",
]
