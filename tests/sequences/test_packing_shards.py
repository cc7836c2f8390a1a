import random

import numpy as np
import pytest

from anygpt.data.balance import realised_shares, repeats_for_shares
from anygpt.data.packing import IGNORE, BlockPacker, Sample
from anygpt.data.shards import BlockReader, ShardWriter


def samples(n, lo, hi, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(lo, hi)
        ids = np.arange(k) + 1000 * (i + 1)  # unique per sample, so boundaries are checkable
        out.append(Sample(ids, ids))
    return out


def pack(packer, ss):
    blocks = [b for s in ss for b in packer.add(s)]
    return blocks + packer.flush()


def test_no_sample_is_split_and_every_token_is_kept():
    ss = samples(400, 20, 300)
    blocks = pack(BlockPacker(1024, pad_id=0), ss)
    pieces = []
    for b in blocks:
        ends = b.starts[1:] + [b.used]
        pieces += [tuple(b.input_ids[a:e]) for a, e in zip(b.starts, ends)]
        assert (b.input_ids[b.used:] == 0).all() and (b.labels[b.used:] == IGNORE).all()
    assert sorted(pieces) == sorted(tuple(s.input_ids) for s in ss)


def test_efficiency_is_high_for_short_samples():
    packer = BlockPacker(4500, pad_id=0)
    pack(packer, samples(3000, 50, 400, seed=1))
    assert packer.efficiency > 0.99


def test_long_samples_are_cut_into_blocks():
    packer = BlockPacker(100, pad_id=0)
    long = Sample(np.arange(250) + 1, np.arange(250) + 1)
    blocks = pack(packer, [long])
    assert packer.split_samples == 1
    assert [b.used for b in blocks] == [100, 100, 50]
    assert np.concatenate([b.input_ids[:b.used] for b in blocks]).tolist() == list(range(1, 251))


def test_shards_round_trip_and_reader_is_seeded(tmp_path):
    ss = samples(200, 10, 90, seed=2)
    packer = BlockPacker(256, pad_id=0)
    writer = ShardWriter(tmp_path, 256, ["a", "b"], blocks_per_shard=7)
    blocks = pack(packer, ss)
    for i, b in enumerate(blocks):
        writer.add(b, "a" if i % 2 else "b")
    index = writer.close()
    assert len(index["shards"]) == -(-len(blocks) // 7)
    reader = BlockReader(tmp_path, seed=5)
    got = list(reader)
    assert len(got) == len(blocks) == len(reader)
    assert sorted(map(lambda x: x[0].tobytes(), got)) == sorted(b.input_ids.tobytes() for b in blocks)
    assert [x[0].tobytes() for x in BlockReader(tmp_path, seed=5)] == [x[0].tobytes() for x in got]
    assert [x[0].tobytes() for x in BlockReader(tmp_path, seed=6)] != [x[0].tobytes() for x in got]
    halves = [list(BlockReader(tmp_path, rank=r, world_size=2)) for r in (0, 1)]
    assert len(halves[0]) + len(halves[1]) == len(blocks)


def test_balancing_oversamples_small_datasets():
    r = repeats_for_shares({"speech": 9000, "music": 1000}, {"speech": 0.6, "music": 0.4})
    assert r["speech"] == pytest.approx(1.0) and r["music"] == pytest.approx(6.0)
    got = realised_shares({"speech": 9000 * r["speech"], "music": 1000 * r["music"]})
    assert got["music"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no tokens"):
        repeats_for_shares({"speech": 10}, {"video": 1.0})
