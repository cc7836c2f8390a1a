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


def lumpy_lengths(seed, pairs=300, block=4500):
    """Lumpy lengths: long and medium samples whose complements fill a block to within 20
    tokens, in random order (a whole-block fit exists, but not next to each other)."""
    rng = random.Random(seed)
    out = []
    for _ in range(pairs):
        a = rng.randint(2300, 3300)
        out += [a, block - a - rng.randint(0, 20)]
    rng.shuffle(out)
    return out


def next_fit(lengths, block):
    """Greedy sequential packing: a sample that does not fit closes the block. -> non-pad share."""
    used, blocks = 0, 1
    for n in lengths:
        if used + n > block:
            blocks, used = blocks + 1, 0
        used += n
    return sum(lengths) / (blocks * block)


@pytest.mark.parametrize("seed", [0, 1])
def test_packer_fills_lumpy_lengths_where_greedy_sequential_does_not(seed):
    lengths = lumpy_lengths(seed)
    assert next_fit(lengths, 4500) < 0.75
    ss = [Sample(np.arange(n) + 10_000 * i, np.arange(n) + 10_000 * i) for i, n in enumerate(lengths)]
    packer = BlockPacker(4500, pad_id=-1)
    blocks = pack(packer, ss)
    assert packer.efficiency >= 0.99
    pieces = [tuple(b.input_ids[a:e]) for b in blocks for a, e in zip(b.starts, b.starts[1:] + [b.used])]
    assert sorted(pieces) == sorted(tuple(s.input_ids) for s in ss)  # whole samples, each once
    again = pack(BlockPacker(4500, pad_id=-1), ss)
    assert [b.input_ids.tobytes() for b in again] == [b.input_ids.tobytes() for b in blocks]  # deterministic


def test_music_like_excerpt_lengths_fill_blocks():
    # music excerpts of 2-5 s of the tiny codec (400-1000 codes at 200 per second) plus a caption
    rng = random.Random(3)
    ss = [Sample(np.arange(n), np.arange(n)) for n in (rng.randint(400, 1000) + rng.randint(40, 80) for _ in range(1800))]
    packer = BlockPacker(4500, pad_id=0)
    pack(packer, ss)
    assert packer.efficiency >= 0.99
    whole = BlockPacker(4500, pad_id=0)  # whole 8 s clips, all ~1670 tokens: two to a block at most
    pack(whole, [Sample(np.arange(1670), np.arange(1670))] * 500)
    assert whole.efficiency < 0.75


def test_flush_tops_up_the_last_block_from_more_samples():
    packer = BlockPacker(1000, pad_id=0)
    blocks = pack(packer, [Sample(np.arange(300), np.arange(300))] * 5)  # 1500 tokens: the last block half empty
    assert [b.used for b in blocks] == [900, 600]
    packer = BlockPacker(1000, pad_id=0)
    for s in [Sample(np.arange(300), np.arange(300))] * 5:
        packer.add(s)
    more = [(Sample(np.arange(n) + 1, np.arange(n) + 1), f"tag{n}") for n in (500, 250, 150, 120, 80)]
    blocks = packer.flush(top_up=iter(more))
    assert [b.used for b in blocks] == [900, 1000]
    assert sum(int(t[3:]) for t in packer.topped_up) == 400 and packer.topped_up_tokens == 400
    assert packer.efficiency == pytest.approx(1900 / 2000)
    assert BlockPacker(1000, pad_id=0).flush(top_up=iter(more)) == []  # nothing to top up


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
