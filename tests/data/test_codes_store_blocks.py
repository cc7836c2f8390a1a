"""Tokenise once, then build blocks, with a stand-in image tokenizer the test registers."""

import json

import numpy as np
import pytest
import torch
from grid_tokenizer import GridTokenizer
from transformers import AutoTokenizer

from anygpt.data.blocks import BlocksConfig, DatasetConfig, build_blocks
from anygpt.data.codes_store import CodesStore, tokenize_corpus
from anygpt.data.packing import IGNORE
from anygpt.data.shards import BlockReader
from anygpt.layout import TokenLayout
from anygpt.parts import CodesPart
from anygpt.token_spec import TokenSpec


def test_tokenize_once_resumes_and_counts_corrupt_items(corpus, tmp_path):
    out = tmp_path / "codes"
    first = tokenize_corpus(corpus / "images", "image", "test-grid", out, workers=0, items_per_shard=16, progress=False)
    assert first == {"encoded": 40, "failed": 1, "skipped": 0}
    assert "bad.png" in (out / "failed.jsonl").read_text()
    run = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
    assert run["encoded"] == 40 and run["failed"] == 1 and run["items_per_second"] > 0
    again = tokenize_corpus(corpus / "images", "image", "test-grid", out, workers=0, progress=False)
    assert again == {"encoded": 0, "failed": 1, "skipped": 40}  # a failed item is tried again (it may be fixed)
    assert [json.loads(line)["id"] for line in (out / "failed.jsonl").read_text().splitlines()] == ["bad"]
    store = CodesStore(out)
    tok = GridTokenizer()
    assert len(store) == 40
    assert torch.equal(store.get("img7"), tok.encode_file(corpus / "images" / "files" / "7.png"))
    with pytest.raises(KeyError, match="bad"):
        store.get("bad")


def test_tokenize_in_worker_processes_matches(corpus, tmp_path):
    counts = tokenize_corpus(corpus / "images", "image", "test-grid", tmp_path / "c", workers=2, items_per_shard=8,
                             progress=False)
    assert counts["encoded"] == 40
    a = dict(CodesStore(tmp_path / "c").items())
    assert torch.equal(a["img3"], GridTokenizer().encode_file(corpus / "images" / "files" / "3.png"))


def image_and_text_config(corpus, tmp_path, shares) -> BlocksConfig:
    """Image pairs, image documents and text of the test corpus (its images tokenised here)."""
    tokenize_corpus(corpus / "images", "image", "test-grid", tmp_path / "codes", workers=0, progress=False)
    return BlocksConfig(
        datasets=[
            DatasetConfig("image-pairs", "pair", str(corpus / "images"), "image", str(tmp_path / "codes"), "caption"),
            DatasetConfig("image-docs", "interleaved", str(corpus / "images"), "image", str(tmp_path / "codes"), "caption"),
            DatasetConfig("text", "text", str(corpus / "text")),
        ],
        block_len=256, seed=1, shares=shares, text_tokenizer={"train_vocab": 300},
    )


def test_blocks_decode_back_to_the_original_codes(corpus, tmp_path):
    cfg = image_and_text_config(corpus, tmp_path, {"image-pairs": 0.5, "image-docs": 0.2, "text": 0.3})
    report = build_blocks(cfg, tmp_path / "blocks", progress=False)
    assert set(report["samples"]["image-pairs"]) == {"image_to_text", "image_from_text"}
    assert report["realised_shares"]["image-pairs"] == pytest.approx(0.5, abs=0.05)
    assert report["repeats"]["text"] >= 1 and min(report["repeats"].values()) == pytest.approx(1.0)
    assert 0.9 < report["packing_efficiency"] <= 1.0

    tok = AutoTokenizer.from_pretrained(tmp_path / "blocks", local_files_only=True)
    specs = [TokenSpec.from_dict(s) for s in json.loads((tmp_path / "blocks" / "anygpt.json").read_text())["specs"]]
    layout = TokenLayout.from_tokenizer(tok, specs)
    store = CodesStore(tmp_path / "codes")
    train = {tuple(store.get(f"img{i}").flatten().tolist()) for i in range(36)}
    test = {tuple(store.get(f"img{i}").flatten().tolist()) for i in range(36, 40)}
    in_blocks = []
    for ids, labels, source in BlockReader(tmp_path / "blocks", seed=0):
        used = labels != IGNORE
        assert (ids[used] == labels[used]).all()  # pretraining: loss on every token
        in_blocks += [tuple(p.codes.flatten().tolist()) for p in layout.parse_ids(ids[used].tolist(), tok.decode)
                      if isinstance(p, CodesPart)]
    assert set(in_blocks) == train  # every train image, decoded back exactly; no test image
    assert len(in_blocks) > len(train)  # pairs and documents, oversampled
    assert not test & set(in_blocks)


def test_cfg_drop_empties_the_text_of_a_share_of_text_to_image_pairs(corpus, tmp_path):
    cfg = image_and_text_config(corpus, tmp_path, {"image-pairs": 0.8, "image-docs": 0.1, "text": 0.1})
    cfg.datasets[0].cfg_drop = 0.5
    report = build_blocks(cfg, tmp_path / "blocks", progress=False)
    counts = report["samples"]["image-pairs"]
    assert set(counts) == {"image_to_text", "image_from_text", "image_unconditional"}
    assert counts["image_unconditional"] > 0.25 * (counts["image_from_text"] + counts["image_unconditional"])
    tok = AutoTokenizer.from_pretrained(tmp_path / "blocks", local_files_only=True)
    text = " ".join(tok.decode(ids.tolist()) for ids, _, _ in BlockReader(tmp_path / "blocks", seed=0))
    # the from_text template reads "... This is input: {caption}<eoh>": empty once the text is dropped
    empty = text.replace("  ", " ").count("This is input: <eoh>")
    assert empty == counts["image_unconditional"]
    from anygpt.data.check_blocks import check_blocks

    assert check_blocks(cfg, tmp_path / "blocks")["ok"]  # the images are still the corpus's


def test_report_and_check_on_the_built_blocks(corpus, tmp_path):
    from anygpt.data.blocks import by_modality, format_report
    from anygpt.data.check_blocks import check_blocks

    cfg = image_and_text_config(corpus, tmp_path, {"image-pairs": 2, "image-docs": 1, "text": 1})
    report = build_blocks(cfg, tmp_path / "blocks", progress=False)
    assert report["target_shares"] == {"image-pairs": 0.5, "image-docs": 0.25, "text": 0.25}  # normalised
    assert report["target_modality_shares"] == {"image": 0.75, "text": 0.25}
    assert sum(report["realised_modality_shares"].values()) == pytest.approx(1.0)
    assert report["realised_modality_shares"]["image"] == pytest.approx(0.75, abs=0.05)
    assert set(report["packing_efficiency_per_dataset"]) == {"image-pairs", "image-docs", "text"}
    text = format_report(report)
    assert "image 0.750 -> " in text and "image_to_text=" in text and "samples/s" in text
    assert by_modality({"a": 0.2, "b": 0.3, "c": 0.5}, {"a": "x", "b": "x"}) == {"x": 0.5, "c": 0.5}

    rep = check_blocks(cfg, tmp_path / "blocks")
    assert rep["ok"] and rep["blocks_checked"] == sum(report["blocks"].values())
    pairs = rep["datasets"]["image-pairs"]
    assert pairs["media_matched"] == pairs["media_segments"] == sum(report["samples"]["image-pairs"].values())
    assert json.loads((tmp_path / "blocks" / "check.json").read_text())["ok"]

    # one code changed in one block, one pad token given a label: both are found
    index = json.loads((tmp_path / "blocks" / "index.json").read_text())
    shard = tmp_path / "blocks" / index["shards"][0]["file"]
    with np.load(shard) as z:
        data = {k: z[k] for k in z.files}
    tok = AutoTokenizer.from_pretrained(tmp_path / "blocks", local_files_only=True)
    image = TokenLayout.from_tokenizer(tok, [GridTokenizer().token_spec])["image"]
    row = next(i for i in range(len(data["input_ids"])) if (data["input_ids"][i] == image.start_id).any())
    at = int(np.flatnonzero(data["input_ids"][row] == image.start_id)[0]) + 1  # the first code of an image
    code = int(data["input_ids"][row, at]) - image.code_offset
    data["input_ids"][row, at] = data["labels"][row, at] = image.code_offset + (code + 1) % 16
    padded = next(i for i in range(len(data["input_ids"])) if data["input_ids"][i, -1] == tok.pad_token_id)
    data["labels"][padded, -1] = 5
    np.savez(shard, **data)
    bad = check_blocks(cfg, tmp_path / "blocks")
    assert not bad["ok"]
    faults = {k: sum(r[k] for r in bad["datasets"].values()) for k in ("media_unknown", "media_held_out", "trained_pad")}
    assert faults["media_unknown"] + faults["media_held_out"] == 1 and faults["trained_pad"] == 1


def test_blocks_in_parts_split_the_items_and_share_a_vocabulary(corpus, tmp_path):
    from anygpt.data.check_blocks import check_blocks
    from anygpt.errors import AnyGPTError
    from anygpt.lm.text_tokenizer import train_text_tokenizer

    tokenize_corpus(corpus / "images", "image", "test-grid", tmp_path / "codes", workers=0, progress=False)
    datasets = [DatasetConfig("image-pairs", "pair", str(corpus / "images"), "image", str(tmp_path / "codes"), "caption"),
                DatasetConfig("text", "text", str(corpus / "text"))]
    with pytest.raises(AnyGPTError, match="one text tokenizer for all parts"):
        build_blocks(BlocksConfig(datasets, block_len=256), tmp_path / "x", progress=False, part=0, parts=2)
    train_text_tokenizer([f"Sentence {i} says something plain." for i in range(50)] + ["picture number 1"],
                         vocab_size=300).save_pretrained(tmp_path / "tok")
    cfg = BlocksConfig(datasets, block_len=256, text_tokenizer={"path": str(tmp_path / "tok")})
    store = CodesStore(tmp_path / "codes")
    seen = []
    for part in (0, 1):
        report = build_blocks(cfg, tmp_path / f"part{part}", progress=False, part=part, parts=2)
        topped_up = report["topped_up_samples"]["text"]  # the last block filled from one more pass
        assert report["parts"] == 2 and sum(report["samples"]["text"].values()) - topped_up == 150
        assert check_blocks(cfg, tmp_path / f"part{part}")["ok"]
        tok = AutoTokenizer.from_pretrained(tmp_path / f"part{part}", local_files_only=True)
        layout = TokenLayout.from_tokenizer(tok, [GridTokenizer().token_spec])
        got = {tuple(p.codes.flatten().tolist()) for ids, _, _ in BlockReader(tmp_path / f"part{part}")
               for p in layout.parse_ids(ids[ids != tok.pad_token_id].tolist(), tok.decode) if isinstance(p, CodesPart)}
        seen.append(got)
    assert (tmp_path / "part0" / "tokenizer.json").read_bytes() == (tmp_path / "part1" / "tokenizer.json").read_bytes()
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {tuple(store.get(f"img{i}").flatten().tolist()) for i in range(36)}
