"""Packing samples of one dataset into fixed-length blocks, as the paper does (blocks of up to
4500 tokens), so that little is padding.

The packer holds a pool of pending samples (up to `buffer_blocks` blocks' worth of tokens) and
builds one block at a time from it: first-fit decreasing (the longest pending sample opens the
block, then the longest that still fits goes in) until at most `fill_window` tokens are free,
then the subset of pending samples whose lengths fill the rest best (subset sum over the pool).
Because the pool holds samples of many lengths, the last gap of a block is filled by a
combination that fits it, even when no single sample is short enough, which an online packer
placing each sample as it comes cannot do. Memory is bounded by the pool.
At the end, the last block's room can be topped up with samples of a further pass over the
dataset (see `flush`), so that a small dataset does not end in a half-empty block.

A sample is never split across blocks unless it is longer than a block; then it is cut into
block-sized pieces and the remainder is packed like any other sample.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

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


@dataclass(eq=False)  # no field-wise ==: the fields are arrays
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

    buffer_blocks: the pool of pending samples holds up to this many blocks' worth of tokens
    before a block is built from it (more: fuller blocks, more memory).
    fill_window: once at most this many tokens of a block are free, the rest is filled with the
    subset of pending samples that fills it best (exact subset sum), not longest first.
    Deterministic: the same samples in the same order give the same blocks.
    """

    def __init__(self, block_len: int, pad_id: int, *, buffer_blocks: int = 256, fill_window: int = 1536):
        if block_len < 1:
            raise ValueError("block_len must be >= 1")
        if buffer_blocks < 1:
            raise ValueError("buffer_blocks must be >= 1")
        self.block_len, self.pad_id = block_len, pad_id
        self.buffer_tokens = buffer_blocks * block_len
        self.fill_window = fill_window
        self._pool: dict[int, deque[Sample]] = {}  # length -> pending samples of that length, FIFO
        self._lengths: list[int] = []  # sorted distinct lengths in the pool
        self._pending = 0  # tokens in the pool
        self.tokens = 0  # non-pad tokens emitted
        self.slots = 0  # tokens emitted including padding
        self.samples = 0
        self.split_samples = 0
        self.topped_up: list[object] = []  # tags of the samples flush(top_up=...) used
        self.topped_up_tokens = 0

    def _new_block(self) -> Block:
        return Block(np.full(self.block_len, self.pad_id, np.int32), np.full(self.block_len, IGNORE, np.int32))

    def _emit(self, block: Block) -> Block:
        self.tokens += block.used
        self.slots += self.block_len
        return block

    def _push(self, sample: Sample) -> None:
        n = len(sample)
        if n not in self._pool:
            self._pool[n] = deque()
            bisect.insort(self._lengths, n)
        self._pool[n].append(sample)
        self._pending += n

    def _take_longest(self, at_most: int) -> Sample | None:
        """Remove and return the longest pending sample of at most `at_most` tokens."""
        i = bisect.bisect_right(self._lengths, at_most)
        if i == 0:
            return None
        n = self._lengths[i - 1]
        q = self._pool[n]
        sample = q.popleft()
        if not q:
            del self._pool[n]
            del self._lengths[i - 1]
        self._pending -= n
        return sample

    def _best_subset(self, space: int) -> list[int]:
        """Lengths of pending samples whose sum is the largest possible <= space (subset sum over
        the pool, as a bitset of reachable sums; each length used at most as often as pending)."""
        mask = (1 << (space + 1)) - 1
        reach, steps = 1, []  # steps: (length, reachable sums before adding it)
        # longest first: the walk back below keeps the earliest steps it can, so long samples go in
        # and short ones stay pending for later gaps
        for n in reversed(self._lengths[:bisect.bisect_right(self._lengths, space)]):
            for _ in range(min(len(self._pool[n]), space // n)):
                grown = (reach | (reach << n)) & mask
                if grown == reach:
                    break
                steps.append((n, reach))
                reach = grown
            if reach >> space & 1:
                break
        total = reach.bit_length() - 1
        chosen = []
        for n, before in reversed(steps):  # walk back: use n if the sum is not reachable without it
            if not before >> total & 1:
                chosen.append(n)
                total -= n
        return chosen

    def _put(self, block: Block, s: Sample) -> None:
        n = len(s)
        block.input_ids[block.used:block.used + n] = s.input_ids
        block.labels[block.used:block.used + n] = s.labels
        block.starts.append(block.used)
        block.used += n

    def _build(self) -> Block:
        """One block from the pool (which must not be empty): longest samples first while much
        space is left, then the subset of pending samples that fills the rest best."""
        block = self._new_block()
        while self.block_len - block.used > self.fill_window:
            s = self._take_longest(self.block_len - block.used)
            if s is None:
                break
            self._put(block, s)
        for n in self._best_subset(self.block_len - block.used):
            self._put(block, self._take_longest(n))
        return self._emit(block)

    def add(self, sample: Sample) -> list[Block]:
        """Take one sample; return the blocks that are complete now."""
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
            sample = Sample(ids[whole:], labels[whole:])
        if len(sample) == 0:
            return out
        self._push(sample)
        while self._pending >= self.buffer_tokens:
            out.append(self._build())
        return out

    def flush(self, top_up: Iterable[tuple[Sample, object]] | None = None) -> list[Block]:
        """The blocks of what is still pending; the last one may be partly padding.

        top_up: (sample, tag) pairs of a further pass over the dataset (oversampling it a little):
        if the last block has room, it is filled with the subset of the first of these (those
        that fit, up to 64 times the room or 4096 samples) that fills it best; the rest are
        dropped. The tags
        of the samples used are in self.topped_up (count them as samples of the dataset)."""
        out = []
        while self._pending:
            out.append(self._build())
        self.topped_up, self.topped_up_tokens = [], 0
        if top_up is None or not out or out[-1].used == self.block_len:
            return out
        last = out[-1]
        gap = self.block_len - last.used
        tags: dict[int, deque] = {}
        pulled = 0
        for sample, tag in top_up:  # candidates: samples that fit the gap, in the (empty) pool
            pulled += 1
            if len(sample) <= gap:
                self._push(sample)
                tags.setdefault(len(sample), deque()).append(tag)
            if self._pending >= 64 * gap or pulled >= 4096:  # enough to choose from
                break
        for n in self._best_subset(gap):
            self._put(last, self._take_longest(n))
            self.topped_up.append(tags[n].popleft())
            self.tokens += n
            self.topped_up_tokens += n
            self.samples += 1
        self._pool, self._lengths, self._pending = {}, [], 0
        return out

    @property
    def efficiency(self) -> float:
        """Share of emitted block slots holding real tokens (non-pad)."""
        return self.tokens / self.slots if self.slots else 0.0
