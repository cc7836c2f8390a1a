"""anygpt.data.corpora.text: cleaning, dedup keys, the hashed split and what counts as speakable."""

from __future__ import annotations

from collections import Counter

from anygpt.data.corpora.text import clean, normalise_key, speakable, text_split


def test_clean_and_dedup_key():
    assert clean("  \u201cCaf\u00e9\u201d   isn\u2019t\n open ") == '"Cafe" isn\'t open'
    assert clean("\u4e2d\u6587") == ""
    assert normalise_key("The CAT -- sat!") == normalise_key("the cat sat") == "the cat sat"


def test_split_is_stable_per_text_and_near_its_bands():
    assert text_split("The cat sat.") == text_split("the CAT sat") in ("train", "val", "test")
    counts = Counter(text_split(f"sentence number {i}") for i in range(4000))
    assert set(counts) == {"train", "val", "test"}
    assert 0.86 < counts["train"] / 4000 < 0.94 and counts["val"] > 100 and counts["test"] > 100


def test_speakable_sentences():
    assert speakable("The cat sat on the mat.", 3, 12)
    assert not speakable("The cat.", 3, 12) and not speakable("one two three four", 1, 3)
    assert not speakable("Call 555-1234 now", 1, 10) and not speakable("x = y + 1", 1, 10)
