"""Block shards a trainer streams: `shard-NNNNN.npz` files (input_ids, labels int32 [N, L],
source uint16 [N], the dataset of each block) and an `index.json` that lists them.

Memory is bounded by one shard when writing and reading, so a corpus 1000x larger only means
more shards. `read_block_index` and `load_shard` are the one checked reader of a block
folder (the trainer's stream, anygpt.train.lm_data, reads through them too); for several
machines, give each a disjoint `rank` of `world_size`: the reader takes every world_size-th
block, as training does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from anygpt.data.packing import Block
from anygpt.errors import AnyGPTError
from anygpt.files import atomic_path, write_json
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
        write_json(self.out / INDEX, index)
        return index


class BlockDataError(AnyGPTError, ValueError):
    """A block folder that is missing, empty, corrupt or built for another vocabulary."""


@dataclass
class BlockIndex:
    """A block folder's index.json, checked: every number in range, every shard a file inside
    the folder (files.safe_join, links included)."""

    folder: Path
    block_len: int
    datasets: list[str]
    shards: list[tuple[str, int]]  # (file name, blocks)
    raw: dict

    def __len__(self) -> int:
        return sum(n for _, n in self.shards)

    def shard_path(self, i: int) -> Path:
        return self.folder / self.shards[i][0]


def read_block_index(folder: str | Path) -> BlockIndex:
    """The one reader of a block folder's index (BlockDataError naming the file and field)."""
    from anygpt.cli_flags import Number, positive_int
    from anygpt.data.blocks_config import MAX_BLOCK_LEN
    from anygpt.errors import ManifestError, UnsafePathError
    from anygpt.files import safe_join

    folder = Path(folder)
    path = folder / INDEX
    if not folder.is_dir():
        raise BlockDataError(f"{folder}: no such block folder")
    if not path.is_file():
        raise BlockDataError(f"{path}: no block index; build the blocks with `anygpt blocks` (or the build did not finish)")
    try:
        raw = read_json(path, what="block index")
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        block_len = Number(int, low=1, high=MAX_BLOCK_LEN).check(raw.get("block_len"), "block_len")
        datasets = raw.get("datasets")
        if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
            raise ValueError(f"datasets: {datasets!r} is not a list of dataset names")
        entries = raw.get("shards")
        if not isinstance(entries, list):
            raise ValueError("shards: not a list of shards")
        if not entries:
            raise BlockDataError(f"{folder}: the block folder holds no blocks; rebuild it with `anygpt blocks`")
        shards = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise ValueError(f"shards[{i}]: {e!r} is not {{\"file\": NAME, \"blocks\": N}}")
            safe_join(folder, e["file"], what=f"shards[{i}].file")
            shards.append((e["file"], positive_int.check(e.get("blocks"), f"shards[{i}].blocks")))
    except BlockDataError:
        raise
    except (ManifestError, UnsafePathError, ValueError) as e:
        raise BlockDataError(f"{path}: not a usable block index: {e}") from None
    for name, _ in shards:
        if not (folder / name).is_file():
            raise BlockDataError(f"{folder / name}: shard listed in {INDEX} is missing")
    return BlockIndex(folder, block_len, datasets, shards, raw)


def load_shard(index: BlockIndex, i: int, vocab_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shard i of a block folder -> (input_ids, labels int32 [N, L], source [N]), checked against
    its index entry: N blocks as listed, of the index's length, datasets that exist, token ids
    inside `vocab_size`, and at least one labelled token (a shard whose labels are all masked
    would train at loss 0)."""
    import zipfile

    path = index.shard_path(i)
    listed = index.shards[i][1]
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, labels, source = z["input_ids"], z["labels"], z["source"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise BlockDataError(f"{path}: corrupt or truncated block shard ({e}); rebuild the blocks") from None
    if ids.ndim != 2 or ids.shape != labels.shape or ids.shape[1] != index.block_len or source.shape != (len(ids),):
        raise BlockDataError(f"{path}: shard arrays {ids.shape}/{labels.shape}/{source.shape} do not match "
                             f"block_len {index.block_len}")
    if len(ids) != listed:
        raise BlockDataError(f"{path}: holds {len(ids)} blocks, {INDEX} says {listed}; rebuild the blocks")
    if not all(np.issubdtype(a.dtype, np.integer) for a in (ids, labels, source)):
        raise BlockDataError(f"{path}: shard arrays must hold whole numbers")
    if source.size and (source.min() < 0 or source.max() >= len(index.datasets)):
        raise BlockDataError(f"{path}: a block names dataset {int(source.max())}; {INDEX} lists {len(index.datasets)}")
    if vocab_size is not None and ids.size and (ids.max() >= vocab_size or ids.min() < 0):
        raise BlockDataError(f"{path}: token id {int(ids.max())} is outside the model's vocabulary of {vocab_size}; "
                             "these blocks were built for another vocabulary")
    if not np.any(labels != -100):
        raise BlockDataError(f"{path}: every label is masked (-100): nothing to train on; rebuild the blocks")
    return ids, labels, source


@dataclass
class BlockReader:
    """Iterates blocks of a shard folder: (input_ids [L], labels [L], dataset name).

    shuffle with `seed` (+ epoch): shard order and the order inside each shard. rank/world_size
    split the blocks between machines or data-loader workers as training does
    (anygpt.train.lm_data): by block, block g of the folder (in index order) going to rank
    g % world_size.
    """

    folder: str | Path
    seed: int = 0
    shuffle: bool = True
    rank: int = 0
    world_size: int = 1
    index: BlockIndex = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.index = read_block_index(self.folder)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} not in 0..{self.world_size - 1}")

    def _starts(self) -> list[int]:
        starts, n = [], 0
        for _, blocks in self.index.shards:
            starts.append(n)
            n += blocks
        return starts

    def __len__(self) -> int:
        return len(range(self.rank, len(self.index), self.world_size))

    def iter_epoch(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        starts = self._starts()
        order_of_shards = list(range(len(self.index.shards)))
        if self.shuffle:
            rng.shuffle(order_of_shards)
        names = self.index.datasets
        for s in order_of_shards:
            ids, labels, source = load_shard(self.index, s)
            rows = [r for r in range(len(ids)) if (starts[s] + r) % self.world_size == self.rank]
            if self.shuffle:
                rng.shuffle(rows)
            for i in rows:
                yield ids[i], labels[i], names[int(source[i])]

    def __iter__(self):
        return self.iter_epoch(0)
