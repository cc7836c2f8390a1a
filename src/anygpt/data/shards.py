"""Block shards a trainer streams: `shard-NNNNN.npz` files (input_ids, labels int32 [N, L],
source uint16 [N], the dataset of each block) and an `index.json` that lists them.

Memory is bounded by one shard when writing and reading, so a corpus 1000x larger only means
more shards. For several machines, give each a disjoint `rank` of `world_size`: the reader
takes every world_size-th shard (and the builders split items the same way).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from anygpt.data.packing import Block
from anygpt.errors import AnyGPTError
from anygpt.files import atomic_path
from anygpt.manifest import read_json

INDEX = "index.json"


class ShardWriter:
    """Collects blocks and writes a shard every `blocks_per_shard` blocks; `close()` writes the
    index. Shards are written atomically; an index exists only for a finished set."""

    def __init__(self, out_dir: str | Path, block_len: int, datasets: list[str], *, blocks_per_shard: int = 1024):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.block_len, self.datasets, self.per_shard = block_len, list(datasets), blocks_per_shard
        self._ids: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._source: list[int] = []
        self.shards: list[dict] = []
        self.blocks_per_dataset = {d: 0 for d in self.datasets}
        self.tokens_per_dataset = {d: 0 for d in self.datasets}

    def add(self, block: Block, dataset: str) -> None:
        if len(block.input_ids) != self.block_len:
            raise ValueError(f"block of length {len(block.input_ids)} in a writer of block_len {self.block_len}")
        self._ids.append(block.input_ids)
        self._labels.append(block.labels)
        self._source.append(self.datasets.index(dataset))
        self.blocks_per_dataset[dataset] += 1
        self.tokens_per_dataset[dataset] += block.used
        if len(self._ids) >= self.per_shard:
            self._write()

    def _write(self) -> None:
        if not self._ids:
            return
        name = f"shard-{len(self.shards):05d}.npz"
        with atomic_path(self.out / name) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, input_ids=np.stack(self._ids), labels=np.stack(self._labels),
                         source=np.asarray(self._source, dtype=np.uint16))
        self.shards.append({"file": name, "blocks": len(self._ids)})
        self._ids, self._labels, self._source = [], [], []

    def close(self, **extra) -> dict:
        self._write()
        index = {"block_len": self.block_len, "datasets": self.datasets, "shards": self.shards,
                 "blocks_per_dataset": self.blocks_per_dataset, "tokens_per_dataset": self.tokens_per_dataset, **extra}
        with atomic_path(self.out / INDEX) as tmp:
            tmp.write_text(json.dumps(index, indent=1))
        return index


@dataclass
class BlockReader:
    """Iterates blocks of a shard folder: (input_ids [L], labels [L], dataset name).

    shuffle with `seed` (+ epoch): shard order and the order inside each shard. rank/world_size
    split the shards between machines or data-loader workers.
    """

    folder: str | Path
    seed: int = 0
    shuffle: bool = True
    rank: int = 0
    world_size: int = 1
    index: dict = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        path = self.folder / INDEX
        if not path.exists():
            raise AnyGPTError(f"{path}: no block index; build the blocks first (or the build did not finish)")
        self.index = read_json(path, what="block index")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} not in 0..{self.world_size - 1}")

    def __len__(self) -> int:
        return sum(s["blocks"] for s in self._my_shards())

    def _my_shards(self) -> list[dict]:
        return self.index["shards"][self.rank::self.world_size]

    def iter_epoch(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        shards = list(self._my_shards())
        if self.shuffle:
            rng.shuffle(shards)
        names = self.index["datasets"]
        for s in shards:
            with np.load(self.folder / s["file"]) as z:
                ids, labels, source = z["input_ids"], z["labels"], z["source"]
            order = list(range(len(ids)))
            if self.shuffle:
                rng.shuffle(order)
            for i in order:
                yield ids[i], labels[i], names[int(source[i])]

    def __iter__(self):
        return self.iter_epoch(0)
