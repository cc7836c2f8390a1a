"""Music excerpts in pretraining samples and conversations: whole frames of the codes [K, T],
seeded, lengths in the configured range; blocks built with them decode back to contiguous slices
of the sources."""

import argparse
import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from anygpt.data.blocks import BlocksConfig, DatasetConfig, build_blocks
from anygpt.data.check_blocks import check_blocks
from anygpt.data.codes_store import CodesStore, _write_shard
from anygpt.data.instruct.realise import Realiser, read_conversations
from anygpt.data.instruct.script import Element, Script, ScriptTurn
from anygpt.data.pretraining import excerpt, excerpt_frames
from anygpt.data.shards import BlockReader
from anygpt.errors import AnyGPTError
from anygpt.layout import TokenLayout
from anygpt.parts import CodesPart
from anygpt.token_spec import TokenSpec

MUSIC = TokenSpec("music", "\U0001F3B6", "<somu>", "<eomu>", 512, 4, None)  # 4 codebooks of 512, 25 Hz here


def frame_codes(t: int, k: int = 4) -> torch.Tensor:
    """[K, T] codes that name their place: codebook l of frame t holds (7 * t + l) % 512."""
    return (7 * torch.arange(t)[None] + torch.arange(k)[:, None]) % 512


def test_excerpt_frames_turn_seconds_into_frames():
    assert excerpt_frames((2, 8), 200, 8.0) == (50, 200)  # 25 frames/s
    assert excerpt_frames((2, 5), 200, 8.0) == (50, 125)
    assert excerpt_frames((2, 8), 40, 1.6) == (40, 40)  # a clip shorter than the minimum: whole
    with pytest.raises(ValueError):
        excerpt_frames((3, 2), 200, 8.0)


def test_excerpts_are_whole_frames_seeded_and_in_range():
    codes = frame_codes(200)
    layout = TokenLayout.plan(100, [MUSIC])
    full_ids = layout.codes_to_ids("music", codes)
    draws = [excerpt(codes, (50, 150), random.Random(f"s/{i}")) for i in range(200)]
    lengths = set()
    for cut, t in draws:
        n = cut.shape[1]
        assert cut.shape[0] == 4 and 50 <= n <= 150 and 0 <= t <= 200 - n
        assert torch.equal(cut, codes[:, t:t + n])  # every codebook cut at the same frames
        # as LM ids: exactly the full item's ids from frame t on, 4 ids a frame
        assert torch.equal(layout.codes_to_ids("music", cut), full_ids[4 * t:4 * (t + n)])
        lengths.add(n)
    assert len(lengths) > 50 and min(lengths) < 60 and max(lengths) > 140  # spread over the range
    again = [excerpt(codes, (50, 150), random.Random(f"s/{i}")) for i in range(200)]
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(draws, again))  # same seed, same cuts
    short = frame_codes(30)
    assert excerpt(short, (50, 150), random.Random(0))[0] is short  # shorter than the minimum: whole


def test_dataset_config_rejects_excerpts_that_make_no_sense():
    for modality in ("speech", "image"):
        with pytest.raises(ValueError, match="no excerpts"):
            DatasetConfig("x", "pair", "c", modality, "codes", excerpt_seconds=[2, 8])
    with pytest.raises(ValueError, match="0 < min <= max"):
        DatasetConfig("x", "pair", "c", "music", "codes", excerpt_seconds=[8, 2])
    with pytest.raises(ValueError, match="pair and interleaved"):
        DatasetConfig("x", "text", "c", excerpt_seconds=[2, 8])
    with pytest.raises(ValueError, match="per_document"):
        DatasetConfig("x", "interleaved", "c", "music", "codes", per_document=[0, 2])
    assert DatasetConfig("x", "pair", "c", "music", "codes").excerpt_bounds({"id": "a"}, 200) is None  # default: whole


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """24 train clips of 8 s (200 frames at 25 Hz), 2 short train clips (1.6 s), 4 held-out clips."""
    root = tmp_path_factory.mktemp("music")
    (root / "corpus").mkdir()
    (root / "codes").mkdir()
    g = torch.Generator().manual_seed(0)
    rows, ids, codes = [], [], []
    for i in range(30):
        frames, split = (40, "train") if i in (5, 17) else (200, "test" if i >= 26 else "train")
        ids.append(f"m{i}")
        codes.append(torch.randint(0, 512, (4, frames), generator=g).numpy().astype(np.int32))
        rows.append({"id": f"m{i}", "path": f"wavs/{i}.wav", "caption": f"A piece number {i} on a piano.",
                     "duration": frames / 25, "split": split})
    (root / "corpus" / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    _write_shard(root / "codes" / "codes-000-00000.npz", ids, codes)
    (root / "codes" / "done.jsonl").write_text(json.dumps({"shard": "codes-000-00000.npz", "ids": ids}) + "\n")
    (root / "codes" / "meta.json").write_text(json.dumps({"modality": "music", "tokenizer": "test", "tokenizer_kwargs": {},
                                                          "token_spec": MUSIC.to_dict(), "num_codebooks": 4}))
    (root / "text").mkdir()
    (root / "text" / "manifest.jsonl").write_text("\n".join(
        json.dumps({"id": f"t{i}", "text": f"Sentence {i} says something plain.", "split": "train"}) for i in range(200)) + "\n")
    return root, dict(zip(ids, codes)), {r["id"]: r for r in rows}


def music_config(root, seconds=(2, 8), **kw):
    def ds(name, kind, **extra):
        return DatasetConfig(name, kind, str(root / "corpus"), "music", str(root / "codes"), "caption",
                             excerpt_seconds=list(seconds), **extra)

    return BlocksConfig([ds("music-pairs", "pair"), ds("music-docs", "interleaved", per_document=[1, 3]),
                         DatasetConfig("text", "text", str(root / "text"))],
                        block_len=2048, seed=kw.get("seed", 0), text_tokenizer={"train_vocab": 300},
                        shares={"music-pairs": 0.5, "music-docs": 0.3, "text": 0.2})


def test_blocks_with_excerpts_decode_back_to_slices_of_the_sources(music, tmp_path):
    root, codes, rows = music
    cfg = music_config(root)
    report = build_blocks(cfg, tmp_path / "a", progress=False)
    assert report["realised_shares"]["music-pairs"] == pytest.approx(0.5, abs=0.05)

    tok = AutoTokenizer.from_pretrained(tmp_path / "a", local_files_only=True)
    layout = TokenLayout.from_tokenizer(tok, [MUSIC])
    lengths = []
    for ids, labels, _ in BlockReader(tmp_path / "a", shuffle=False):
        for p in layout.parse_ids(ids[labels != -100].tolist(), tok.decode):
            if not isinstance(p, CodesPart):
                continue
            c, n = p.codes.numpy(), p.codes.shape[1]
            hits = [(i, t) for i, src in codes.items() for t in range(src.shape[1] - n + 1)
                    if np.array_equal(src[:, t:t + n], c)]
            assert hits, "a music segment that is no contiguous run of a source's frames"
            i, _ = hits[0]
            assert rows[i]["split"] == "train"  # never a held-out clip
            if codes[i].shape[1] == 40:
                assert n == 40  # shorter than the 2 s minimum: whole
            else:
                assert 50 <= n <= 200
                lengths.append(n)
    assert len(set(lengths)) > 20 and min(lengths) < 80  # excerpts of many lengths, not whole clips

    rep = check_blocks(cfg, tmp_path / "a")
    assert rep["ok"]
    for name in ("music-pairs", "music-docs"):
        r = rep["datasets"][name]
        assert r["media_matched"] == r["media_segments"] > r["media_excerpts"] > 0 and r["excerpts_out_of_bounds"] == 0

    # same seed, same blocks; another seed, other excerpts
    build_blocks(cfg, tmp_path / "b", progress=False)
    build_blocks(music_config(root, seed=1), tmp_path / "c", progress=False)
    shard = lambda d: np.load(tmp_path / d / "shard-00000.npz")["input_ids"]  # noqa: E731
    assert np.array_equal(shard("a"), shard("b")) and not np.array_equal(shard("a"), shard("c"))

    # checked against tighter bounds (6-8 s), the short excerpts are faults
    tight = check_blocks(music_config(root, seconds=(6, 8)), tmp_path / "a")
    assert not tight["ok"] and tight["datasets"]["music-pairs"]["excerpts_out_of_bounds"] > 0


def test_check_finds_an_excerpt_that_is_not_a_contiguous_slice(music, tmp_path):
    root, _, _ = music
    cfg = music_config(root)
    build_blocks(cfg, tmp_path, progress=False)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    r = TokenLayout.from_tokenizer(tok, [MUSIC])["music"]
    path = tmp_path / "shard-00000.npz"
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    row = int(np.flatnonzero((data["input_ids"] == r.start_id).any(1))[0])
    a = int(np.flatnonzero(data["input_ids"][row] == r.start_id)[0]) + 1  # first code of a segment
    frames = data["input_ids"][row, a:a + 8].reshape(2, 4).copy()  # swap its frames 0 and 1: same codes, not a slice
    data["input_ids"][row, a:a + 8] = data["labels"][row, a:a + 8] = frames[::-1].reshape(-1)
    np.savez(path, **data)
    rep = check_blocks(cfg, tmp_path)
    assert not rep["ok"]
    assert sum(d["media_unknown"] for d in rep["datasets"].values()) == 1


def test_excerpts_need_durations(music, tmp_path):
    root, _, rows = music
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "duration"})
                                                   for r in rows.values()) + "\n")
    cfg = BlocksConfig([DatasetConfig("m", "pair", str(corpus), "music", str(root / "codes"), "caption",
                                      excerpt_seconds=[2, 8])], block_len=2048, text_tokenizer={"train_vocab": 300})
    with pytest.raises(AnyGPTError, match="duration"):
        build_blocks(cfg, tmp_path / "out", progress=False)


def test_conversations_take_seeded_music_excerpts(music, tmp_path):
    root, codes, rows = music
    store = CodesStore(root / "codes")
    layout = TokenLayout.plan(0, [MUSIC])
    scripts = [Script(f"c{i}", "music_request", [
        ScriptTurn("user", [Element("text", "Play me something.")]),
        ScriptTurn("assistant", [Element("text", "Here it is."), Element("music", rows[f"m{i}"]["caption"], f"m{i}")])])
        for i in range(12)]
    durations = {"music": {i: r["duration"] for i, r in rows.items()}}

    def realise(out):
        r = Realiser(layout, {"music": store}, excerpt_seconds={"music": (2, 5)}, durations=durations)
        assert r.run(scripts, tmp_path / out, progress=False)["written"] == 12
        return {cid: turns[1].parts[-1].codes for cid, turns in read_conversations(tmp_path / out / "conversations.jsonl", layout)}

    first = realise("a")
    lengths = []
    for cid, got in first.items():
        src = torch.from_numpy(codes["m" + cid[1:]]).long()
        n = got.shape[1]
        assert any(torch.equal(src[:, t:t + n], got) for t in range(src.shape[1] - n + 1))  # whole frames, in order
        if src.shape[1] == 40:
            assert n == 40  # shorter than the 2 s minimum: whole
        else:
            assert 50 <= n <= 125  # 2-5 s at 25 Hz
            lengths.append(n)
    assert len(set(lengths)) > 3
    assert all(torch.equal(first[c], v) for c, v in realise("b").items())  # seeded by the conversation id

    no_durations = Realiser(layout, {"music": store}, excerpt_seconds={"music": (2, 5)})
    assert no_durations.run(scripts[:1], tmp_path / "c", progress=False)["failed"] == 1  # logged, not fatal
    assert "no 'duration'" in (tmp_path / "c" / "failed.jsonl").read_text()
    with pytest.raises(AnyGPTError, match="no excerpts of image"):
        Realiser(layout, {}, excerpt_seconds={"image": (2, 5)})


def test_realise_cli_reads_excerpt_bounds():
    from anygpt.data.instruct.cli import _excerpt_arg

    assert _excerpt_arg("music=2,5") == ("music", (2.0, 5.0))
    for bad in ("music", "music=5,2", "music=0,3", "music=a,b"):
        with pytest.raises(argparse.ArgumentTypeError, match="MIN"):
            _excerpt_arg(bad)
