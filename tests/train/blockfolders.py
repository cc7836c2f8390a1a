"""Small block folders made in the test: a BPE text tokenizer expanded with a 16-code image
modality, and random or patterned blocks written by the real ShardWriter."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from anygpt.data.packing import IGNORE, Block
from anygpt.data.shards import ShardWriter
from anygpt.layout import ROLE_TOKENS
from anygpt.lm.checkpoint import ANYGPT_CONFIG, FolderConfig
from anygpt.lm.expand import add_modality_tokens
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.lm.tiny import builtin_texts
from anygpt.modalities.image import RELEASED_IMAGE_SPEC
from anygpt.token_spec import TokenSpec

SPEC = TokenSpec("image", RELEASED_IMAGE_SPEC.prefix, RELEASED_IMAGE_SPEC.start, RELEASED_IMAGE_SPEC.end, 16, 1, 4)


def small_tokenizer(text_vocab: int = 300, spec: TokenSpec = SPEC, specs: list[TokenSpec] | None = None):
    tok = train_text_tokenizer(builtin_texts(), vocab_size=text_vocab)
    add_modality_tokens(tok, specs or [spec])
    return tok


def write_block_folder(folder: Path, *, blocks: dict[str, int], block_len: int = 64, seed: int = 0,
                       tokenizer=None, masked: bool = False, per_shard: int = 8, spec: TokenSpec = SPEC,
                       specs: list[TokenSpec] | None = None) -> Path:
    """blocks: dataset name -> number of blocks. Each block repeats one of three short random
    motifs of its dataset (the same for every seed), so a model can learn them (loss falls). masked: label only the second half (as chat blocks do).
    spec: the image codes' spec the folder records (the tokenizer must have been expanded with it);
    specs: the modality specs it records instead."""
    tok = tokenizer or small_tokenizer(spec=spec)
    rng = np.random.default_rng(seed)
    writer = ShardWriter(folder, block_len, list(blocks), blocks_per_shard=per_shard)
    for name, n in blocks.items():
        named = np.random.default_rng(zlib.crc32(name.encode()))  # same motifs in train and val folders
        motifs = [named.integers(3, len(tok), size=int(named.integers(3, 9))) for _ in range(3)]
        for _ in range(n):
            motif = motifs[int(rng.integers(len(motifs)))]
            ids = np.resize(motif, block_len).astype(np.int32)
            labels = ids.copy()
            if masked:
                labels[: block_len // 2] = IGNORE
            writer.add(Block(ids, labels, [0], block_len), name)
    writer.close()
    tok.save_pretrained(folder)
    (folder / ANYGPT_CONFIG).write_text(json.dumps(FolderConfig(specs or [spec], "MMGPT", {}, released=False).to_json()))
    return folder


__all__ = ["SPEC", "ROLE_TOKENS", "small_tokenizer", "write_block_folder"]
