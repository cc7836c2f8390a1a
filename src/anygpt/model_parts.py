"""One object that resolves a model folder's parts once (moshi's habit): the LM, its text
tokenizer, the token layout, each modality tokenizer the folder names, and the chat template.
`AnyGPT.from_pretrained` consumes it; nothing else reads a model folder's anygpt.json.

    parts = ModelParts.from_folder("path/to/AnyGPT-chat", tokenizers={"image": seed2})
    model = AnyGPT.from_parts(parts)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from anygpt.errors import CheckpointError
from anygpt.layout import TokenLayout
from anygpt.lm.checkpoint import load_lm, tokenizer_folder
from anygpt.modalities import load_tokenizer
from anygpt.modalities.base import ModalityTokenizer
from anygpt.modalities.registry import tokenizer_loader


@dataclass
class ModelParts:
    """lm: HF causal LM, or for our folders a PlainLlama (anygpt.lm.plain_llama; AnyGPT.lm turns
    it into the HF model on first use); text_tokenizer: its tokenizer (HF's, or PlainTokenizer); tokenizers: modality -> tokenizer given
    by the caller; deferred: modality -> a zero-argument load of a tokenizer the folder names (its
    name and path checked, not yet loaded: a model loads only the de-tokenizers its replies use);
    template: chat template name; tokenizer_entries: modality -> {"loader"[, "path"]} as the
    folder's anygpt.json names them (written back by save_pretrained); folder: where they were read;
    generation: reply modality -> the GenerationSettings fields the folder sets over its preset;
    instruction_prompts: see anygpt.lm.checkpoint.FolderConfig."""

    lm: Any
    text_tokenizer: Any
    layout: TokenLayout
    tokenizers: dict[str, ModalityTokenizer] = field(default_factory=dict)
    deferred: dict[str, Callable[[], ModalityTokenizer]] = field(default_factory=dict)
    template: str = "MMGPT"
    tokenizer_entries: dict[str, dict] = field(default_factory=dict)
    folder: Path | None = None
    generation: dict[str, dict] = field(default_factory=dict)  # the folder's generation defaults
    instruction_prompts: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, path: str | Path, *, tokenizers: Mapping[str, ModalityTokenizer] | None = None,
                    template: str | None = None, dtype: torch.dtype = torch.float32,
                    device: str = "cpu") -> "ModelParts":
        """Read a model folder: a released AnyGPT folder (e.g. fnlp/AnyGPT-chat, downloaded by the
        user) or one of ours. Modality tokenizers named in its anygpt.json are loaded (from inside
        the folder when the entry has a path) when first used; `tokenizers` adds or overrides them
        (the released tokenizers live in other folders); `template` overrides the folder's chat template."""
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"{path}: model folder not found (a shipped model by name, such as anygpt-tiny, "
                                  "loads with anygpt.loaders.load_model)")
        lm, text_tokenizer, layout, cfg = load_lm(path, dtype=dtype, device=device, plain=True)
        deferred = {}
        for m, t in cfg.tokenizers.items():
            if m not in (tokenizers or {}):
                tokenizer_loader(m, t["loader"])  # an unknown name fails now, not at the first reply
                kwargs = {"path": tokenizer_folder(path, t)} if "path" in t else {}
                deferred[m] = partial(load_tokenizer, m, t["loader"], **kwargs)
        return cls(lm, text_tokenizer, layout, dict(tokenizers or {}), deferred, template or cfg.chat_template,
                   dict(cfg.tokenizers), path, dict(cfg.generation), dict(cfg.instruction_prompts))
