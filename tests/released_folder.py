"""A LLaMA-shaped sentencepiece tokenizer and a folder in the released AnyGPT-chat layout with
random tiny weights (nothing is downloaded). Imported by tests/conftest.py and by tests."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from transformers import LlamaTokenizer

from anygpt.layout import CHAT_TOKENS, ROLE_TOKENS
from anygpt.lm.tiny import builtin_texts, tiny_llama
from anygpt.modalities import released_specs

SP_VOCAB = 600


def train_sentencepiece(folder: Path) -> Path:
    """A LLaMA-style sentencepiece BPE model (unk 0, bos 1, eos 2, byte fallback), small vocab."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = builtin_texts() * 4 + ["The quick brown fox jumps over the lazy dog. 0123456789"]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(folder / "tokenizer"), vocab_size=SP_VOCAB,
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True,
        character_coverage=1.0, minloglevel=2, num_threads=1,
    )
    return folder / "tokenizer.model"




def write_released_folder(path: Path, sp_model: Path, *, safetensors: bool) -> Path:
    """Mimic fnlp/AnyGPT-chat: LLaMA weights (sharded), tokenizer.model, tokenizer_config.json,
    special_tokens_map.json and added_tokens.json, tokens added exactly as the release's
    training script adds them (roles, then per modality codes + markers, then <-Res-> <-Ins->)."""
    tok = LlamaTokenizer(vocab_file=str(sp_model), legacy=True)
    tok.add_tokens(list(ROLE_TOKENS))
    for spec in released_specs():
        tok.add_tokens(spec.code_tokens() + [spec.start, spec.end])
    tok.add_tokens(list(CHAT_TOKENS))
    model = tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=3)
    model.save_pretrained(path, safe_serialization=safetensors, max_shard_size="1MB")
    tok.save_pretrained(path)
    return path
