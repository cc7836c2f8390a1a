"""Packing samples of one dataset into fixed-length blocks, as the paper does (blocks of up to
4500 tokens), with best-fit over a window of open blocks so that little is padding.

A sample is never split across blocks unless it is longer than a block; then it is cut into
block-sized pieces and the remainder is packed like any other sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = -100  # label of tokens without loss (padding, masked user turns)


@dataclass
class Sample:
    """input_ids, labels: int arrays [n]; labels IGNORE where no loss is taken."""

    input_ids: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.input_ids = np.asarray(self.input_ids, dtype=np.int32)
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if self.input_ids.shape != self.labels.shape or self.input_ids.ndim != 1:
            raise ValueError(f"sample input_ids {self.input_ids.shape} and labels {self.labels.shape} must be equal 1-D")

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(eq=False)  # identity: blocks are removed from the open list by identity
class Block:
    """One packed block: input_ids, labels int32 [block_len]; starts: offsets of its samples."""

    input_ids: np.ndarray
    labels: np.ndarray
    starts: list[int] = field(default_factory=list)
    used: int = 0


class BlockPacker:
    """Streams samples in, blocks out.

        packer = BlockPacker(4500, pad_id=0)
        for s in samples:
            for block in packer.add(s): write(block)
        for block in packer.flush(): write(block)
    """

    def __init__(self, block_len: int, pad_id: int, *, open_blocks: int = 64):
        if block_len < 1:
            raise ValueError("block_len must be >= 1")
        self.block_len, self.pad_id, self.window = block_len, pad_id, open_blocks
        self._open: list[Block] = []
        self.tokens = 0  # non-pad tokens emitted
        self.slots = 0  # tokens emitted including padding
        self.samples = 0
        self.split_samples = 0

    def _new_block(self) -> Block:
        return Block(np.full(self.block_len, self.pad_id, np.int32), np.full(self.block_len, IGNORE, np.int32))

    def _emit(self, block: Block) -> Block:
        self.tokens += block.used
        self.slots += self.block_len
        return block

    def add(self, sample: Sample) -> list[Block]:
        """Place one sample; return the blocks that are complete now."""
        self.samples += 1
        out: list[Block] = []
        ids, labels = sample.input_ids, sample.labels
        if len(ids) > self.block_len:
            self.split_samples += 1
            whole = len(ids) // self.block_len * self.block_len
            for a in range(0, whole, self.block_len):
                b = self._new_block()
                b.input_ids[:] = ids[a:a + self.block_len]
                b.labels[:] = labels[a:a + self.block_len]
                b.starts, b.used = [0], self.block_len
                out.append(self._emit(b))
            ids, labels = ids[whole:], labels[whole:]
        n = len(ids)
        if n == 0:
            return out
        fits = [b for b in self._open if self.block_len - b.used >= n]
        if fits:
            block = min(fits, key=lambda b: self.block_len - b.used)  # best fit
        else:
            if len(self._open) >= self.window:
                fullest = max(self._open, key=lambda b: b.used)
                self._open.remove(fullest)
                out.append(self._emit(fullest))
            block = self._new_block()
            self._open.append(block)
        block.input_ids[block.used:block.used + n] = ids
        block.labels[block.used:block.used + n] = labels
        block.starts.append(block.used)
        block.used += n
        if block.used == self.block_len:
            self._open.remove(block)
            out.append(self._emit(block))
        return out

    def flush(self) -> list[Block]:
        out = [self._emit(b) for b in sorted(self._open, key=lambda b: -b.used)]
        self._open = []
        return out

    @property
    def efficiency(self) -> float:
        """Share of emitted block slots holding real tokens (non-pad)."""
        return self.tokens / self.slots if self.slots else 0.0
