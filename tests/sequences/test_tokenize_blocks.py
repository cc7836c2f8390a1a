"""Tokenise once, then build blocks, with a stand-in image tokenizer the test registers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anygpt.data.blocks import BlocksConfig, DatasetConfig, build_blocks
from anygpt.data.codes_store import CodesStore, tokenize_corpus
from anygpt.data.packing import IGNORE
from anygpt.data.shards import BlockReader
from anygpt.layout import TokenLayout
from anygpt.media_io import load_image, save_image
from anygpt.modalities import get_modality, register_tokenizer
from anygpt.modalities.base import ModalityTokenizer, TokenSpec
from anygpt.modalities.image import RELEASED_IMAGE_SPEC
from anygpt.parts import CodesPart
from transformers import AutoTokenizer


class GridTokenizer(ModalityTokenizer):
    """8x8 image -> 16 codes: the mean grey level of each 2x2 cell in 16 levels."""

    name = "image"
    image_size = (8, 8)
    frame_rate = 16
    num_codebooks = 1
    codebook_size = 16
    file_extensions = (".png",)

    @property
    def token_spec(self):
        s = RELEASED_IMAGE_SPEC
        return TokenSpec("image", s.prefix, s.start, s.end, 16, 1, 16)

    def load(self, path):
        return load_image(path, self.image_size)

    def encode(self, media):
        grey = media.mean(1)  # [B, 8, 8]
        cells = grey.unfold(1, 2, 2).unfold(2, 2, 2).mean((-1, -2))  # [B, 4, 4]
        return (cells * 15.999).long().reshape(len(media), 1, 16)

    def decode(self, codes, **context):
        g = (codes.float().reshape(-1, 4, 4) + 0.5) / 16
        return g.repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(1).expand(-1, 3, -1, -1)

    def save(self, media, path):
        return save_image(media, path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    register_tokenizer("image", "test-grid", GridTokenizer)
    root = tmp_path_factory.mktemp("corpus")
    (root / "images" / "files").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        arr = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / "files" / f"{i}.png")
        rows.append({"id": f"img{i}", "path": f"files/{i}.png", "caption": f"picture number {i}",
                     "split": "test" if i >= 36 else "train"})
    (root / "images" / "files" / "bad.png").write_bytes(b"not a png")
    rows.append({"id": "bad", "path": "files/bad.png", "caption": "broken", "split": "train"})
    (root / "images" / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "text").mkdir()
    (root / "text" / "manifest.jsonl").write_text("\n".join(
        json.dumps({"id": f"t{i}", "text": f"Sentence {i} says something plain.", "split": "train"}) for i in range(300)) + "\n")
    yield root
    get_modality("image").tokenizer_loaders.pop("test-grid", None)


def test_tokenize_once_resumes_and_counts_corrupt_items(corpus, tmp_path):
    out = tmp_path / "codes"
    first = tokenize_corpus(corpus / "images", "image", "test-grid", out, workers=0, items_per_shard=16, progress=False)
    assert first == {"encoded": 40, "failed": 1, "skipped": 0}
    assert "bad.png" in (out / "failed.jsonl").read_text()
    again = tokenize_corpus(corpus / "images", "image", "test-grid", out, workers=0, progress=False)
    assert again == {"encoded": 0, "failed": 0, "skipped": 41}
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


def test_blocks_decode_back_to_the_original_codes(corpus, tmp_path):
    tokenize_corpus(corpus / "images", "image", "test-grid", tmp_path / "codes", workers=0, progress=False)
    cfg = BlocksConfig(
        datasets=[
            DatasetConfig("image-pairs", "pair", str(corpus / "images"), "image", str(tmp_path / "codes"), "caption"),
            DatasetConfig("image-docs", "interleaved", str(corpus / "images"), "image", str(tmp_path / "codes"), "caption"),
            DatasetConfig("text", "text", str(corpus / "text")),
        ],
        block_len=256, seed=1, shares={"image-pairs": 0.5, "image-docs": 0.2, "text": 0.3},
        text_tokenizer={"train_vocab": 300},
    )
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
