"""anygpt.manifest: strict and lenient JSONL reading, manifests, record checks, safe media paths."""

import hashlib
import json

import pytest

from anygpt.errors import ManifestError, UnsafePathError
from anygpt.manifest import (check_record, file_mismatch, iter_jsonl, media_path, read_json, read_jsonl,
                             read_manifest)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_iter_jsonl_numbers_lines_and_skips_blank_ones(tmp_path):
    f = write_lines(tmp_path / "a.jsonl", ['{"id": 1}', "", '{"id": 2}'])
    assert list(iter_jsonl(f)) == [(1, {"id": 1}), (3, {"id": 2})]


def test_malformed_line_is_an_error_naming_file_and_line_unless_lenient(tmp_path):
    f = write_lines(tmp_path / "log.jsonl", ['{"id": 1}', '[1, 2]', '{"id": 3'])
    with pytest.raises(ManifestError, match=r"log\.jsonl:2: a JSON list"):
        read_jsonl(f)
    assert read_jsonl(f, lenient=True) == [{"id": 1}]
    assert read_jsonl(tmp_path / "missing.jsonl", lenient=True) == []
    with pytest.raises(ManifestError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_read_json_errors_name_the_file(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": [1]}')
    assert read_json(tmp_path / "ok.json") == {"a": [1]}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ManifestError, match=r"bad\.json: meta is not valid JSON"):
        read_json(tmp_path / "bad.json", what="meta")
    (tmp_path / "latin.json").write_bytes(b'"\xff"')
    with pytest.raises(ManifestError, match=r"latin\.json: JSON file is not UTF-8"):
        read_json(tmp_path / "latin.json")
    with pytest.raises(ManifestError, match="is a folder"):
        read_json(tmp_path)


def test_read_manifest_filters_splits_and_requires_fields(tmp_path):
    write_lines(tmp_path / "manifest.jsonl", [json.dumps(r) for r in (
        {"id": "a", "path": "a.png"}, {"id": "b", "path": "b.png", "split": "test"},
        {"id": "c", "path": "c.png", "split": "train"})])
    assert [r["id"] for r in read_manifest(tmp_path, splits=["train"])] == ["a", "c"]
    assert [r["id"] for r in read_manifest(tmp_path, splits=None, part=1, parts=2)] == ["b"]
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:1: the record has no 'text' field"):
        read_manifest(tmp_path, require=("id", "text"))
    write_lines(tmp_path / "dup.jsonl", ['{"id": "x"}', '{"id": "x"}'])
    with pytest.raises(ManifestError, match="id 'x' again"):
        read_manifest(tmp_path / "dup.jsonl")


@pytest.mark.parametrize("record, field", [({"id": True}, "id"), ({"bytes": -1}, "bytes"),
                                           ({"duration": float("nan")}, "duration"),
                                           ({"captions": ["ok", 3]}, "captions"), ({"path": 5}, "path")])
def test_check_record_refuses_bad_types(record, field):
    with pytest.raises(ManifestError, match=f"here: {field} "):
        check_record(record, "here")
    check_record({"id": 7, "bytes": 0, "duration": 1.5, "captions": ["a"], "attributes": {}}, "here")


def test_media_path_stays_inside_its_roots(tmp_path):
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir(), other.mkdir()
    (other / "x.png").write_bytes(b"x")
    assert media_path([root, other], {"id": 1, "path": "x.png"}, "m") == other / "x.png"
    assert media_path([root, other], {"id": 1, "path": "y.png"}, "m") == root / "y.png"
    (root / "out").symlink_to(other, target_is_directory=True)
    for bad in ("../other/x.png", str(other / "x.png"), "out/x.png"):
        with pytest.raises(UnsafePathError, match="m: item 1 path"):
            media_path([root], {"id": 1, "path": bad}, "m")


def test_file_mismatch_reports_size_and_hash(tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert file_mismatch(f, {"bytes": 5, "sha256": digest}) is None
    assert "has 5 bytes, the manifest says 4" in file_mismatch(f, {"bytes": 4})
    assert "sha256 differs" in file_mismatch(f, {"sha256": "0" * 64})
