"""anygpt.data.blocks_config: the `anygpt blocks` config, its checks, and each dataset's records."""

from __future__ import annotations

import json

import pytest

from anygpt.data.blocks_config import BlocksConfig, DatasetConfig, dataset_records
from anygpt.errors import AnyGPTError


def music(**kw):
    return DatasetConfig(**{"name": "m", "kind": "pair", "corpus": "c", "modality": "music", "codes": "k", **kw})


def test_a_config_file_reads_with_its_defaults(tmp_path):
    path = tmp_path / "blocks.json"
    path.write_text(json.dumps({"block_len": 64, "datasets": [
        {"name": "t", "kind": "text", "corpus": "data/text"},
        {"name": "m", "kind": "pair", "modality": "music", "corpus": "c", "codes": "k", "excerpt_seconds": [2, 5]}]}))
    cfg = BlocksConfig.from_json(path)
    assert (cfg.block_len, cfg.seed, cfg.top_up, cfg.shares) == (64, 0, True, None)
    assert [d.name for d in cfg.datasets] == ["t", "m"] and cfg.datasets[0].splits == ["train"]
    assert cfg.datasets[1].excerpt_seconds == [2, 5] and cfg.datasets[1].per_document == [2, 4]


@pytest.mark.parametrize("entry, problem", [
    ({"name": "x", "kind": "poem", "corpus": "c"}, "kind must be one of"),
    ({"name": "x", "kind": "pair", "corpus": "c", "modality": "image"}, "needs 'modality' and 'codes'"),
    ({"name": "x", "kind": "text", "corpus": "c", "excerpt_seconds": [1, 2]}, "for pair and interleaved datasets only"),
    ({"name": "x", "kind": "pair", "corpus": "c", "modality": "speech", "codes": "k", "excerpt_seconds": [1, 2]},
     "no excerpts of speech"),
    ({"name": "x", "kind": "pair", "corpus": "c", "modality": "music", "codes": "k", "excerpt_seconds": [3, 2]},
     r"excerpt_seconds must be \[min, max\] with 0 < min <= max"),
    ({"name": "x", "kind": "interleaved", "corpus": "c", "modality": "image", "codes": "k", "per_document": [0, 2]},
     r"per_document must be \[min, max\] with 1 <= min <= max"),
    ({"name": "x", "kind": "interleaved", "corpus": "c", "modality": "image", "codes": "k", "cfg_drop": 0.1},
     "cfg_drop is for pair datasets only"),
    ({"name": "x", "kind": "pair", "corpus": "c", "modality": "image", "codes": "k", "cfg_drop": 1.5}, "cfg_drop"),
    ({"name": "x", "kind": "text"}, "missing 1 required positional argument: 'corpus'"),
])
def test_a_bad_dataset_names_the_file_the_dataset_and_the_problem(tmp_path, entry, problem):
    path = tmp_path / "blocks.json"
    path.write_text(json.dumps({"datasets": [entry]}))
    with pytest.raises(AnyGPTError, match=f"{path}: not a valid blocks config .*{problem}"):
        BlocksConfig.from_json(path)


def test_excerpt_bounds_need_the_items_duration():
    assert music().excerpt_bounds({"id": "a", "duration": 8.0}, 400) is None  # whole clips
    lo, hi = music(excerpt_seconds=[2, 5]).excerpt_bounds({"id": "a", "duration": 8.0}, 400)
    assert (lo, hi) == (100, 250)  # 50 frames per second
    with pytest.raises(AnyGPTError, match="item 'a' has no 'duration' in its manifest"):
        music(excerpt_seconds=[2, 5]).excerpt_bounds({"id": "a"}, 400)


def test_records_of_the_splits_and_of_one_part(tmp_path):
    (tmp_path / "manifest.jsonl").write_text("".join(
        json.dumps({"id": f"i{k}", "split": "train" if k % 3 else "test"}) + "\n" for k in range(9)))
    ds = DatasetConfig("t", "text", str(tmp_path))
    assert [r["id"] for r in dataset_records(ds)] == ["i1", "i2", "i4", "i5", "i7", "i8"]
    assert [r["id"] for r in dataset_records(DatasetConfig("t", "text", str(tmp_path), splits=["test"]))] == ["i0", "i3", "i6"]
    parts = [[r["id"] for r in dataset_records(ds, part=p, parts=2)] for p in (0, 1)]
    assert sorted(parts[0] + parts[1]) == ["i1", "i2", "i4", "i5", "i7", "i8"] and parts[0] and parts[1]
    with pytest.raises(AnyGPTError, match="no manifest for dataset 'c'; build the corpus first"):
        dataset_records(DatasetConfig("c", "chat", str(tmp_path / "none")))
