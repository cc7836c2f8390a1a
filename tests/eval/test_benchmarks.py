"""External benchmark readers on tiny fake layouts, and manifest errors."""

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from anygpt.errors import ManifestError
from anygpt.eval.benchmarks import (
    BenchmarkError, read_benchmark, read_coco_karpathy, read_librispeech, read_eval_items, read_musiccaps, read_vctk,
)


def _tone(path, sr=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.1 * np.sin(np.arange(sr // 4) / 5).astype(np.float32), sr, format=fmt)


def test_librispeech(tmp_path):
    ch = tmp_path / "test-clean" / "1089" / "134686"
    for u in ("0000", "0001"):
        _tone(ch / f"1089-134686-{u}.flac", fmt="FLAC")
    (ch / "1089-134686.trans.txt").write_text("1089-134686-0000 HE HOPED THERE WOULD BE STEW\n1089-134686-0001 STUFF IT\n")
    items = read_librispeech(tmp_path)
    assert [i.id for i in items] == ["1089-134686-0000", "1089-134686-0001"]
    assert items[0].text == "HE HOPED THERE WOULD BE STEW" and items[0].speaker == "1089"
    assert read_librispeech(tmp_path / "test-clean")[1].path.name == "1089-134686-0001.flac"
    (ch / "1089-134686-0001.flac").unlink()
    with pytest.raises(BenchmarkError, match="1089-134686-0001"):
        read_librispeech(tmp_path)


def test_vctk(tmp_path):
    for spk, n in (("p225", 2), ("p226", 1)):
        for k in range(1, n + 1):
            uid = f"{spk}_{k:03d}"
            _tone(tmp_path / "wav48_silence_trimmed" / spk / f"{uid}_mic1.flac", fmt="FLAC")
            (tmp_path / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (tmp_path / "txt" / spk / f"{uid}.txt").write_text("Please call Stella.\n")
    (tmp_path / "txt" / "p226" / "p226_009.txt").write_text("no audio for this one")
    items = read_vctk(tmp_path)
    assert [(i.id, i.speaker) for i in items] == [("p225_001", "p225"), ("p225_002", "p225"), ("p226_001", "p226")]
    assert items[0].text == "Please call Stella."
    with pytest.raises(BenchmarkError, match="txt"):
        read_vctk(tmp_path / "nowhere")


def test_coco_karpathy(tmp_path):
    (tmp_path / "val2014").mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "val2014" / "COCO_val2014_1.jpg")
    meta = {"images": [
        {"filepath": "val2014", "filename": "COCO_val2014_1.jpg", "split": "test", "cocoid": 1,
         "sentences": [{"raw": "A red square. "}, {"raw": "Something red."}]},
        {"filepath": "train2014", "filename": "x.jpg", "split": "train", "cocoid": 2, "sentences": []},
    ]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(meta))
    items = read_coco_karpathy(tmp_path)
    assert len(items) == 1 and items[0].id == "1" and items[0].captions == ["A red square.", "Something red."]
    meta["images"][0]["filename"] = "missing.jpg"
    (tmp_path / "dataset_coco.json").write_text(json.dumps(meta))
    with pytest.raises(BenchmarkError, match="missing.jpg"):
        read_coco_karpathy(tmp_path)


def test_musiccaps(tmp_path):
    (tmp_path / "musiccaps-public.csv").write_text(
        "ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,is_audioset_eval\n"
        "abc,30,40,/m/0,\"['piano', 'slow']\",A slow piano piece.,1,False,True\n"
        "def,0,10,/m/0,\"['drums']\",Loud drums.,2,False,False\n")
    _tone(tmp_path / "wav" / "abc.wav")
    items = read_benchmark("musiccaps", tmp_path)
    assert [i.id for i in items] == ["abc"] and items[0].captions == ["A slow piano piece."]
    _tone(tmp_path / "wav" / "def.wav")
    assert len(read_musiccaps(tmp_path)) == 2 and len(read_musiccaps(tmp_path, eval_only=True)) == 1


def test_manifest_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="nope.jsonl"):
        read_eval_items(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "path": "a.wav"}\nnot json\n')
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: not valid JSON"):
        read_eval_items(bad, check_files=False)
    m = tmp_path / "m.jsonl"
    m.write_text('{"id": "a", "path": "a.wav", "split": "test"}\n')
    with pytest.raises(BenchmarkError, match="a.wav"):
        read_eval_items(m)
    with pytest.raises(BenchmarkError, match="split 'train'"):
        read_eval_items(m, "train", check_files=False)
    with pytest.raises(BenchmarkError, match="unknown benchmark"):
        read_benchmark("imagenet", tmp_path)
