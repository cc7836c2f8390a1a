"""Codes of media the server has seen, by content hash, so that a multi-turn history does not
re-encode the media of earlier turns (and a reply's own media, sent back in the history, map to
the codes the model wrote). A bounded LRU shared by the request threads and the scheduler."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch


def content_key(kind: str, data: bytes) -> str:
    """kind ('image', 'speech', 'music', 'voice') + sha256 of the bytes as sent."""
    return f"{kind}:{hashlib.sha256(data).hexdigest()}"


class MediaCache:
    """key -> codes LongTensor [K, T]; at most `max_items` entries, least recently used dropped."""

    def __init__(self, max_items: int = 256):
        if max_items < 0:
            raise ValueError(f"max_items={max_items}: must be >= 0")
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            codes = self._items.get(key)
            if codes is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return codes

    def put(self, key: str, codes: torch.Tensor) -> None:
        if self.max_items == 0:
            return
        with self._lock:
            self._items[key] = codes
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"items": len(self._items), "max_items": self.max_items, "hits": self.hits, "misses": self.misses}
