"""Random-weight tiny models in our layout and in the release's: for tests and for trying the
whole pipeline before trained weights exist (`anygpt chat --model random-64x2`)."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from anygpt.instructions import POOLS
from anygpt.layout import TokenLayout
from anygpt.lm.expand import expand_vocabulary
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.modalities import released_specs
from anygpt.templates import SYSTEM_ANYGPT, SYSTEM_MMGPT
from anygpt.token_spec import TokenSpec


def builtin_texts() -> list[str]:
    """A small deterministic text sample (instruction pools, system prompts) to train a BPE on."""
    return [SYSTEM_MMGPT, SYSTEM_ANYGPT] + [s for pool in POOLS.values() for s in pool]


def tiny_llama(vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
               max_positions: int = 4096, intermediate: int | None = None,
               kv_heads: int | None = None) -> LlamaForCausalLM:
    """A random LLaMA; intermediate (MLP width) defaults to 2 x hidden, kv_heads to heads."""
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_positions,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def random_tiny(specs: Sequence[TokenSpec] | None = None, *, seed: int = 0, text_vocab: int = 600,
                texts: Sequence[str] | None = None, **llama_kwargs) -> tuple[LlamaForCausalLM, object, TokenLayout]:
    """-> (model, tokenizer, layout): our BPE text tokenizer (trained on `texts`, default
    `builtin_texts()`, which holds enough merges for about 800 tokens) + random LLaMA (keyword
    arguments of `tiny_llama`), vocabulary expanded with `specs` (default: the release's image,
    speech and music)."""
    tokenizer = train_text_tokenizer(texts or builtin_texts(), vocab_size=text_vocab)
    model = tiny_llama(len(tokenizer), seed=seed, **llama_kwargs)
    layout = expand_vocabulary(model, tokenizer, list(specs or released_specs()), seed=seed)
    return model, tokenizer, layout
