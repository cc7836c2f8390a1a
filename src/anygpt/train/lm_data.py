"""Block folders -> the stream of training blocks, mixed by weight, split over ranks by block.

A block folder is what `anygpt blocks` writes: shard-*.npz (input_ids, labels int32 [N, L],
source uint16 [N]), index.json, the expanded text tokenizer and anygpt.json. Every folder of a
run must share one vocabulary (the same tokenizer and token specs); `BlockSource` checks it.

Order. Epoch e of a folder is its blocks with the shard order shuffled and the blocks of each
group of 8 consecutive shards shuffled together, from (seed, folder, e); so a reader holds about
8 shards per folder at a time, and datasets written to separate shards still mix. The
folders' epochs are merged by weight: folder f with weight w_f contributes w_f blocks for each
block of a weight-1 folder, its items spread evenly along the stream (a deterministic merge by
virtual time), and restarts its next epoch whenever it runs out. The result is one global,
endless sequence of blocks; global position g of it depends only on the seed.

Ranks. Step s with a global batch of G = world * micro * accum blocks takes positions
[s*G, (s+1)*G). Micro-batch a of rank r takes positions s*G + a*world*micro + j*world + r for
j < micro: a stride by block, so every rank gets exactly the same number of blocks, the ranks'
blocks are disjoint, and a run resumed at step s reads exactly the blocks it would have read.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anygpt.data.shards import BlockDataError, BlockIndex, load_shard, read_block_index  # noqa: F401
from anygpt.lm.checkpoint import ANYGPT_CONFIG, read_folder_config

MERGE_CHUNK = 4096  # positions of the weighted merge computed at a time
SHUFFLE_SHARDS = 8  # shards per folder whose blocks are shuffled together (and held in memory)


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary (token string -> id) and the LM's special ids."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    h = hashlib.sha256(json.dumps([vocab, tokenizer.bos_token_id, tokenizer.eos_token_id,
                                   tokenizer.pad_token_id], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


@dataclass
class BlockSource:
    """One block folder with its mixing weight."""

    folder: Path
    weight: float = 1.0

    def __post_init__(self) -> None:
        from anygpt.cli_flags import positive_float

        self.folder = Path(self.folder)
        self.checked = read_block_index(self.folder)
        self.index, self.block_len = self.checked.raw, self.checked.block_len
        self.datasets, self.shards = self.checked.datasets, self.checked.shards
        if not (self.folder / ANYGPT_CONFIG).is_file():
            raise BlockDataError(f"{self.folder}: no {ANYGPT_CONFIG}; this folder was not written by `anygpt blocks`")
        try:
            self.weight = positive_float.check(self.weight, f"{self.folder}: weight")
        except ValueError as e:
            raise BlockDataError(str(e)) from None

    @classmethod
    def parse(cls, spec: str) -> "BlockSource":
        """'DIR' or 'DIR:WEIGHT'."""
        folder, sep, weight = spec.rpartition(":")
        try:
            return cls(Path(folder), float(weight)) if sep else cls(Path(spec))
        except ValueError as e:
            if isinstance(e, BlockDataError):
                raise
            return cls(Path(spec))

    def __len__(self) -> int:
        return sum(n for _, n in self.shards)

    def tokenizer(self):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise BlockDataError(f"{self.folder}: cannot read the blocks' tokenizer ({e})") from None

    def specs(self):
        return read_folder_config(self.folder).specs

    def epoch_order(self, seed: int, epoch: int) -> list[tuple[int, int]]:
        """[(shard number, row)] of one epoch: the shard order shuffled, then the rows of each
        group of SHUFFLE_SHARDS consecutive shards shuffled together. `anygpt blocks` writes
        the datasets one after another, so a shard may hold one dataset only: shuffling inside
        single shards would feed the model one dataset for hundreds of steps."""
        rng = random.Random(f"{seed}/{self.folder.name}/{epoch}")
        shard_order = list(range(len(self.shards)))
        rng.shuffle(shard_order)
        out = []
        for g in range(0, len(shard_order), SHUFFLE_SHARDS):
            rows = [(s, r) for s in shard_order[g:g + SHUFFLE_SHARDS] for r in range(self.shards[s][1])]
            rng.shuffle(rows)
            out.extend(rows)
        return out


class ShardCache:
    """The last few shards read, as checked arrays (data.shards.load_shard)."""

    def __init__(self, size: int = 4):
        self.size = size
        self._cache: OrderedDict[Path, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, index: BlockIndex, i: int, vocab_size: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        path = index.shard_path(i)
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        arrays = load_shard(index, i, vocab_size)
        self._cache[path] = arrays
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return arrays


class BlockStream:
    """The global block sequence of several weighted sources (see the module docstring)."""

    def __init__(self, sources: list[BlockSource], seed: int = 0, vocab_size: int | None = None):
        if not sources:
            raise BlockDataError("no block folders given")
        lens = {s.block_len for s in sources}
        if len(lens) > 1:
            raise BlockDataError(f"block folders of different block lengths {sorted(lens)}: "
                                 + ", ".join(f"{s.folder} ({s.block_len})" for s in sources))
        self.sources, self.seed, self.vocab_size = sources, seed, vocab_size
        self.block_len = sources[0].block_len
        self.datasets = sorted({d for s in sources for d in s.datasets})
        self.cache = ShardCache(size=SHUFFLE_SHARDS * len(sources) + 2)
        self._orders: dict[tuple[int, int], list[tuple[int, int]]] = {}
        total_w = sum(s.weight for s in sources)
        self._rate = [s.weight / total_w for s in sources]
        self._chunk_starts: list[list[int]] = [[0] * len(sources)]  # per-source counts at c * MERGE_CHUNK
        self._chunk: tuple[int, list[tuple[int, int]]] | None = None

    def _merge(self, counts: list[int], start: int, n: int) -> list[tuple[int, int]]:
        """Positions start..start+n-1 of the merge (counts: items taken from each source before
        `start`; updated in place). Smooth weighted round robin: the source whose next item is
        most overdue goes next, ties to the first source."""
        refs = []
        for g in range(start, start + n):
            src = max(range(len(counts)), key=lambda i: (self._rate[i] * (g + 1) - counts[i], -i))
            refs.append((src, counts[src]))
            counts[src] += 1
        return refs

    def _ref(self, g: int) -> tuple[int, int]:
        """(source, k): global position g is the k-th item of that source's endless stream.
        Computed a chunk at a time, remembering only each chunk's starting counts."""
        c, i = divmod(g, MERGE_CHUNK)
        if self._chunk is None or self._chunk[0] != c:
            while len(self._chunk_starts) <= c:
                counts = list(self._chunk_starts[-1])
                self._merge(counts, (len(self._chunk_starts) - 1) * MERGE_CHUNK, MERGE_CHUNK)
                self._chunk_starts.append(counts)
            self._chunk = (c, self._merge(list(self._chunk_starts[c]), c * MERGE_CHUNK, MERGE_CHUNK))
        return self._chunk[1][i]

    def block(self, g: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Global position g -> (input_ids int32 [L], labels int32 [L], dataset name)."""
        src, k = self._ref(g)
        s = self.sources[src]
        epoch, i = divmod(k, len(s))
        key = (src, epoch)
        if key not in self._orders:
            self._orders = {kk: v for kk, v in self._orders.items() if kk[0] != src}  # one epoch per source
            self._orders[key] = s.epoch_order(self.seed, epoch)
        shard, row = self._orders[key][i]
        ids, labels, source = self.cache.get(s.checked, shard, self.vocab_size)
        return ids[row], labels[row], s.datasets[int(source[row])]

    def positions(self, step: int, micro: int, micro_batch: int, accum: int, rank: int, world: int) -> list[int]:
        """Global positions of one rank's micro-batch (stride by block)."""
        base = step * world * micro_batch * accum + micro * world * micro_batch
        return [base + j * world + rank for j in range(micro_batch)]

    def batch(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """-> input_ids, labels LongTensor [B, L], dataset names [B]."""
        rows = [self.block(g) for g in positions]
        ids = torch.from_numpy(np.stack([r[0] for r in rows]).astype(np.int64))
        labels = torch.from_numpy(np.stack([r[1] for r in rows]).astype(np.int64))
        return ids, labels, [r[2] for r in rows]


def validation_blocks(sources: list[BlockSource], per_dataset: int, vocab_size: int | None = None
                      ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Held-out blocks grouped by dataset: the first `per_dataset` of each, in shard order."""
    cache = ShardCache(size=2)
    out: dict[str, list] = {}
    for s in sources:
        for i, (_, n) in enumerate(s.shards):
            ids, labels, source = cache.get(s.checked, i, vocab_size)
            for row in range(n):
                d = s.datasets[int(source[row])]
                if len(out.setdefault(d, [])) < per_dataset:
                    out[d].append((ids[row], labels[row]))
    return out
