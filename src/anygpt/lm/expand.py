"""Vocabulary expansion: add the modality tokens to any HF tokenizer and resize the model.

Order is the release's: `[Human] [MMGPT] <eoh> <eos>`, then per modality its code tokens and
its two markers, then `<-Res-> <-Ins->` (chat). Tokens already present are not added again;
`TokenLayout.from_tokenizer` then checks every modality's codes form one contiguous range.
"""

from __future__ import annotations

from typing import Sequence

import torch

from anygpt.layout import TokenLayout, added_tokens
from anygpt.token_spec import TokenSpec


def add_modality_tokens(tokenizer, specs: Sequence[TokenSpec], *, chat: bool = True) -> TokenLayout:
    """Add the tokens (as plain added tokens, not 'special', like the release) and return the
    layout read back from the tokenizer."""
    vocab = tokenizer.get_vocab()
    new = [t for t in added_tokens(specs, chat=chat) if t not in vocab]
    if new:
        tokenizer.add_tokens(new)
    return TokenLayout.from_tokenizer(tokenizer, specs)


def token_matrices(model) -> list[torch.Tensor]:
    """The matrices with one row per token: the input embedding [V, H], and the output head
    [V, H] unless it is tied to the embedding (then it is the same tensor, listed once)."""
    matrices = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != matrices[0].data_ptr():
        matrices.append(head.weight)
    return matrices


def resize_embeddings(model, new_size: int, *, init: str = "random", seed: int = 0) -> int:
    """Resize input embeddings and LM head to `new_size` rows; return the number of new rows.

    init='random': new rows ~ N(0, initializer_range), as in the paper.
    init='mean': new rows = mean of the existing rows (a common trick that keeps the initial
    loss of the new tokens close to that of existing ones).
    """
    if init not in ("random", "mean"):
        raise ValueError(f"init must be 'random' or 'mean', not {init!r}")
    old = model.get_input_embeddings().weight.shape[0]
    if new_size <= old:
        return 0
    model.resize_token_embeddings(new_size, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for w in token_matrices(model):
            if init == "mean":
                w[old:] = w[:old].mean(dim=0, keepdim=True).to(w.dtype)
            else:
                w[old:] = (torch.randn(new_size - old, w.shape[1], generator=gen) * std).to(w.dtype)
    return new_size - old


def expand_vocabulary(model, tokenizer, specs: Sequence[TokenSpec], *, chat: bool = True,
                      init: str = "random", seed: int = 0) -> TokenLayout:
    """add_modality_tokens + resize_embeddings; returns the layout."""
    layout = add_modality_tokens(tokenizer, specs, chat=chat)
    resize_embeddings(model, len(tokenizer), init=init, seed=seed)
    return layout
