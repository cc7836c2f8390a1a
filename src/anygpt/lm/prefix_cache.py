"""Keys and values of recent prompts, so that a new prompt starts from the longest prefix it
shares with one of them instead of being run through the model again (the engine's
ContinuousBatch, anygpt.lm.engine).

A chat server's prompts share a lot: every one begins with the chat template's system prompt,
and a conversation's next turn repeats the earlier ones. On anygpt-tiny a 55-token prompt costs
~30 ms of prefill on one core (arithmetic-bound, not overhead-bound), 43 of its tokens being
the system prompt and the "[Human]:" marker: reusing them leaves a 12-token prefill.

Entries are whole prompts (ids and their keys/values, copied out of a cache row after its
prefill), evicted least recently used first once their tokens together pass `max_tokens`.
Keys carry their rotary position, so a prefix is reused only at the positions it was computed
at (from 0): a prompt's first p ids equal to an entry's first p ids -> the same p keys and
values, up to float rounding (they were computed in another batch).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class PrefixEntry:
    """One stored prompt: ids (a tuple, L of them) and per layer k, v FloatTensor [KV, L, D]."""

    ids: tuple[int, ...]
    k: list[torch.Tensor]
    v: list[torch.Tensor]


class PrefixCache:
    """max_tokens: stored prompt tokens, all entries together (0: store nothing). Memory: each
    token costs 2 x layers x KV heads x head_dim x element size bytes (anygpt-tiny: 18 KiB)."""

    def __init__(self, max_tokens: int):
        self.max_tokens = max(0, int(max_tokens))
        self.entries: OrderedDict[int, PrefixEntry] = OrderedDict()  # least recently used first
        self.tokens = 0
        self._next = 0
        self.hits = 0  # lookups that found a prefix (tests and benchmarks read these)
        self.reused = 0  # prompt tokens not recomputed

    def __len__(self) -> int:
        return len(self.entries)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for e in self.entries.values() for t in e.k + e.v)

    def lookup(self, ids: tuple[int, ...]) -> tuple[int, PrefixEntry | None]:
        """The longest stored prefix of `ids` -> (its length p, the entry holding it), or (0, None).
        The entry's k[layer][:, :p] and v[layer][:, :p] are the keys and values of ids[:p]."""
        best, found = 0, None
        for key, e in self.entries.items():
            if e.ids[0] != ids[0]:
                continue
            p = len(os.path.commonprefix([e.ids, ids]))
            if p > best:
                best, found = p, key
        if found is None:
            return 0, None
        self.entries.move_to_end(found)
        return best, self.entries[found]

    def put(self, ids: tuple[int, ...], k: list[torch.Tensor], v: list[torch.Tensor]) -> None:
        """Store a prompt's keys and values (k, v: per layer [KV, L, D], owned by the cache from
        now on). An entry that is a prefix of `ids` is replaced; nothing is stored if `ids` is a
        prefix of an entry, or longer than max_tokens."""
        n = len(ids)
        if not n or n > self.max_tokens:
            return
        for key, e in list(self.entries.items()):
            if len(e.ids) >= n and e.ids[:n] == ids:
                self.entries.move_to_end(key)
                return
            if len(e.ids) < n and ids[:len(e.ids)] == e.ids:
                self._drop(key)
        while self.entries and self.tokens + n > self.max_tokens:
            self._drop(next(iter(self.entries)))
        self.entries[self._next] = PrefixEntry(ids, k, v)
        self._next += 1
        self.tokens += n

    def clear(self) -> None:
        self.entries.clear()
        self.tokens = 0

    def _drop(self, key: int) -> None:
        self.tokens -= len(self.entries.pop(key).ids)
