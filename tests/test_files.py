"""files.py: the one atomic folder helper and the rule that an output folder is ours only when
new, empty or marked (issue 27, root cause 1)."""

from __future__ import annotations

import pytest

from anygpt.errors import OutputError
from anygpt.files import MARKER, atomic_folder, check_apart, claim_output_dir, mark_output_dir, output_kind


def test_a_new_or_empty_folder_is_ours_and_is_marked(tmp_path):
    for folder in (tmp_path / "new", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        with atomic_folder(folder, "model") as tmp:
            (tmp / "w.bin").write_bytes(b"1")
        assert output_kind(folder) == "model" and (folder / "w.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]  # no temporary folder left


def test_our_folder_is_replaced_whole_keeping_its_readme(tmp_path):
    folder = tmp_path / "m"
    with atomic_folder(folder, "model") as tmp:
        (tmp / "old.bin").write_bytes(b"old")
    (folder / "README.md").write_text("notes")
    with atomic_folder(folder, "model") as tmp:
        (tmp / "new.bin").write_bytes(b"new")
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "README.md", "new.bin"]


def test_a_folder_of_someone_else_is_refused_untouched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years")
    with pytest.raises(OutputError, match=r"mine: --export holds files anygpt did not write \(thesis\.txt\)"):
        with atomic_folder(folder, "model", flag="--export") as tmp:
            (tmp / "w.bin").write_bytes(b"1")
    assert [p.name for p in folder.iterdir()] == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_folder_of_another_kind_is_refused(tmp_path):
    folder = tmp_path / "blocks"
    folder.mkdir()
    mark_output_dir(folder, "blocks")
    (folder / "index.json").write_text("{}")
    with pytest.raises(OutputError, match=r"holds our blocks folder, not a model folder"):
        claim_output_dir(folder, "model")
    claim_output_dir(folder, "blocks")  # its own kind: fine


def test_a_file_put_there_during_the_work_is_kept(tmp_path):
    folder = tmp_path / "m"
    with pytest.raises(OutputError, match="files anygpt did not write"):
        with atomic_folder(folder, "model") as tmp:
            folder.mkdir()
            (folder / "mine.txt").write_text("arrived meanwhile")
            (tmp / "w.bin").write_bytes(b"1")
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("output,how", [("in", "is the same place as"), ("in/sub", "is inside"), (".", "holds")])
def test_an_output_apart_from_its_inputs(tmp_path, output, how):
    (tmp_path / "in").mkdir()
    with pytest.raises(OutputError, match=rf"--out {how} --corpus"):
        check_apart(tmp_path / output, {"--corpus": tmp_path / "in"})
    check_apart(tmp_path / "elsewhere", {"--corpus": tmp_path / "in", "--init": None})
