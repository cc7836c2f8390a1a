"""anygpt.data.corpora.stats: what `anygpt data stats` counts from a corpus's manifests and its
index, and the table it prints."""

from __future__ import annotations

import json

from anygpt.data.corpora.stats import corpus_stats, format_stats


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_counts_per_split_and_overall(tmp_path):
    _write(tmp_path / "speech" / "manifest.jsonl", [
        {"id": "s1", "split": "train", "duration": 1800.0, "bytes": 1000, "speaker": "a"},
        {"id": "s2", "split": "train", "duration": 1800.0, "bytes": 1000, "speaker": "b", "augmented": True},
        {"id": "s3", "split": "test", "duration": 3600.0, "bytes": 2048, "speaker": "a"}])
    _write(tmp_path / "music" / "manifest.jsonl", [
        {"id": "m1", "split": "train", "duration": 8.0, "bytes": 100, "bytes_16k": 50, "piece_id": "p1"},
        {"id": "m2", "split": "train", "duration": 8.0, "bytes": 100, "piece_id": "p1"}])
    _write(tmp_path / "text" / "manifest.jsonl", [{"id": "t1", "split": "train", "text": "abc"}])
    (tmp_path / "index.json").write_text(json.dumps({"preset": "micro", "seed": 0, "corpora": {
        "speech": {"count": 3, "skipped": 1, "skipped_by_reason": {"voice failed": 1}}}}))
    stats = corpus_stats(tmp_path)
    speech = stats["corpora"]["speech"]
    assert list(speech) == ["test", "train", "all"]
    assert speech["train"] == {"items": 2, "hours": 1.0, "bytes": 2000, "speakers": 2, "pieces": 0, "augmented": 1}
    assert speech["all"]["items"] == 3 and speech["all"]["hours"] == 2.0 and speech["all"]["speakers"] == 2
    assert stats["corpora"]["music"]["all"]["bytes"] == 250 and stats["corpora"]["music"]["all"]["pieces"] == 1
    assert stats["corpora"]["text"]["all"]["bytes"] == 4  # text size: its characters and a newline
    assert "images" not in stats["corpora"] and stats["index"]["preset"] == "micro"

    table = format_stats(stats)
    assert table.splitlines()[0].startswith("preset micro  seed 0")
    assert any(line.split()[:5] == ["speech", "test", "1", "1.000", "2.0"] for line in table.splitlines())
    assert "speech  1 of 4 planned" in table and "1  voice failed" in table


def test_a_corpus_without_an_index_says_so(tmp_path):
    _write(tmp_path / "images" / "manifest.jsonl", [{"id": "i1", "split": "train", "bytes": 10}])
    table = format_stats(corpus_stats(tmp_path))
    assert "image    train" in table and "(no index.json: build not run with anygpt data build)" in table
