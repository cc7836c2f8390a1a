"""The block stream of `anygpt train lm`: mixing across shards and folders, epochs, determinism."""

from __future__ import annotations

from collections import Counter

from blockfolders import write_block_folder

from anygpt.train.lm_data import SHUFFLE_SHARDS, BlockSource, BlockStream


def test_datasets_written_to_separate_shards_still_mix(tmp_path):
    # anygpt blocks writes datasets one after another: here each 8-block shard holds one dataset
    folder = write_block_folder(tmp_path / "b", blocks={"speech-pairs": 16, "text": 16}, per_shard=8)
    stream = BlockStream([BlockSource(folder)])
    first = [stream.block(g)[2] for g in range(8)]
    assert set(first) == {"speech-pairs", "text"}, first
    epoch = Counter(stream.block(g)[2] for g in range(32))
    assert epoch == {"speech-pairs": 16, "text": 16}  # one epoch is every block once
    again = BlockStream([BlockSource(folder)])
    assert all((stream.block(g)[0] == again.block(g)[0]).all() for g in range(40))  # the seed fixes the order
    assert SHUFFLE_SHARDS >= 4


def test_folders_mix_by_weight(tmp_path):
    a = write_block_folder(tmp_path / "a", blocks={"chat": 12})
    b = write_block_folder(tmp_path / "b", blocks={"text": 12}, seed=1)
    stream = BlockStream([BlockSource(a), BlockSource(b, 0.5)])
    counts = Counter(stream.block(g)[2] for g in range(30))
    assert counts == {"chat": 20, "text": 10}
