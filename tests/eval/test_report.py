"""anygpt.eval.report: the terminal table and the JSON file of a task report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from anygpt.eval.report import format_table, render_report, write_json


def test_table_formats_and_aligns_values():
    text = format_table([{"name": "a", "wer": 0.5, "ok": True, "n": 12},
                         {"name": "long name", "wer": None, "ok": False, "n": 3456.0}])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "wer", "ok", "n"] and set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["a", "0.5000", "yes", "12"]
    assert lines[3].split() == ["long", "name", "-", "no", "3456.0"]
    assert lines[2].index("12") + 2 == lines[3].index("3456.0") + 6  # numbers right-aligned
    assert format_table([], title="t") == "t\n(no rows)"
    assert "inf" in format_table([{"psnr": math.inf}])


def test_report_renders_summary_then_groups():
    report = {"task": "asr", "system": "whisper", "source": "corpus", "n": 2, "summary": {"wer": 0.25},
              "groups": {"speaker": [{"speaker": "a", "wer": 0.0}, {"speaker": "b", "wer": 0.5}]}}
    text = render_report(report)
    assert text.splitlines()[0] == "anygpt eval asr  system=whisper  source=corpus  n=2"
    assert text.index("by speaker") > text.index("0.2500") and text.rstrip().endswith("0.5000")


def test_json_holds_what_json_cannot_and_is_written_whole(tmp_path):
    report = {"summary": {"psnr": math.inf, "bad": math.nan, "n": np.int64(3), "mean": np.float32(0.5)},
              "items": [{"path": Path("a/b.wav"), "pair": (1, 2)}], 7: "key"}
    path = write_json(report, tmp_path / "out" / "r.json")
    assert json.loads(path.read_text()) == {"summary": {"psnr": "inf", "bad": "nan", "n": 3, "mean": 0.5},
                                            "items": [{"path": "a/b.wav", "pair": [1, 2]}], "7": "key"}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
