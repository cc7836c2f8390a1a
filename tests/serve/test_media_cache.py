"""The media cache: keyed by content hash, bounded, least recently used dropped first."""

from __future__ import annotations

import torch

from anygpt.serve.media_cache import MediaCache, content_key


def test_keys_are_content_hashes_per_kind():
    assert content_key("image", b"abc") == content_key("image", b"abc")
    assert content_key("image", b"abc") != content_key("image", b"abd")
    assert content_key("image", b"abc") != content_key("speech", b"abc")


def test_bounded_lru():
    cache = MediaCache(max_items=2)
    a, b, c = (torch.tensor([[i]]) for i in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recent
    cache.put("c", c)
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    assert cache.get("b") is None
    assert cache.stats() == {"items": 2, "max_items": 2, "hits": 1, "misses": 1}


def test_size_zero_keeps_nothing():
    cache = MediaCache(max_items=0)
    cache.put("a", torch.tensor([[1]]))
    assert len(cache) == 0 and cache.get("a") is None
