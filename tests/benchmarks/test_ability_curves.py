"""benchmarks/ability_curves.py --smoke: a micro run writes the table, the points, the plot and
scores computed from what the model really wrote."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("ability_curves", ROOT / "benchmarks" / "ability_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_table_points_plot_from_real_outputs(tmp_path, capsys):
    from anygpt.eval.scene_captions import scene_caption_accuracy
    from anygpt.eval.scene_checker import check_scene

    tool = _tool()
    out = tmp_path / "run"
    assert tool.main(["--smoke", "--out", str(out), "--answer-only", "--cfg-drop", "0.5", "--cfg-scale", "2"]) == 0
    printed = capsys.readouterr().out
    points = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    abilities = {p["ability"] for p in points}
    assert abilities == {"caption", "text-to-image"}
    assert len(points) >= 4  # at step 0 and at the end, for each ability
    assert points[-1]["tokens"] > 0 and points[0]["tokens"] == 0
    for p in points:
        assert 0.0 <= p["score"] <= 1.0 and p["recipe"]["answer_only"] is True
    table = (out / "table.md").read_text()
    assert table.startswith("| run | ability |") and table.strip() in printed
    with Image.open(out / "curves.png") as im:
        assert im.size[0] > 100
    # the last evaluation's scores are the means of what the model wrote, scored again here
    last = points[-1]["step"]
    rows = [json.loads(line) for line in (out / "outputs" / f"eval-{last:06d}.jsonl").read_text().splitlines()]
    caps = [r for r in rows if r["ability"] == "caption"]
    draws = [r for r in rows if r["ability"] == "text-to-image"]
    assert len(caps) == len(draws) == 3
    want_cap = sum(scene_caption_accuracy(r["caption"], r["attributes"])["object_accuracy"] for r in caps) / 3
    got_cap = next(p for p in points if p["step"] == last and p["ability"] == "caption")["score"]
    assert abs(want_cap - got_cap) < 1e-9

    import torch

    from anygpt.modalities import load_tokenizer
    tok = load_tokenizer("image", "compact")
    exact = []
    for r in draws:
        image = tok.decode(torch.tensor(r["codes"]).view(1, 1, -1))[0]
        truth = next(c["attributes"] for c in caps if c["truth"] == r["caption"])
        exact.append(check_scene(image, truth)["exact"])
    got_img = next(p for p in points if p["step"] == last and p["ability"] == "text-to-image")["score"]
    assert abs(sum(exact) / 3 - got_img) < 1e-9


def test_compare_plots_several_runs_in_one_png(tmp_path):
    tool = _tool()
    for name, score in (("a", 0.25), ("b", 0.5)):
        (tmp_path / name).mkdir()
        rows = [{"run": name, "ability": "caption", "step": s, "tokens": s * 100, "pairs": s, "train_s": s,
                 "score": score * s / 2, "exact": 0.0} for s in (0, 1, 2)]
        (tmp_path / name / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = tmp_path / "cmp.png"
    assert tool.main(["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--png", str(png)]) == 0
    assert png.is_file()
    text = tool.table(tool.read_points([tmp_path / "a", tmp_path / "b"]))
    assert text.count("\n| a |") == 3 and text.count("\n| b |") == 3


def test_compare_takes_eval_reports_at_the_tokens_given(tmp_path, capsys):
    tool = _tool()
    report = tmp_path / "eval-step1500"
    report.mkdir()
    summaries = {"caption-test-kind=scene-anygpt": {"BLEU-1": 0.4, "attr_background": 1.0, "object_accuracy": 0.25,
                                                    "color_named": 0.5},
                 "caption-heldout_combos-kind=scene-anygpt": {"object_accuracy": 0.75},
                 "text-to-image-test-kind=scene-anygpt": {"scene_exact": 0.125, "scene_background": 0.5}}
    (report / "report.json").write_text(json.dumps({"summaries": summaries}))
    png = tmp_path / "cmp.png"
    assert tool.main(["--compare", "--report", f"long:8.6e6:{report}", "--png", str(png)]) == 0
    assert png.is_file()
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| long |")]
    assert [(r[1], r[3], r[6]) for r in rows] == [("caption", "8600000", "0.250"), ("text-to-image", "8600000", "0.125")]
    points = tool.report_points(f"long:100:{report}")
    assert points[0]["background"] == 1.0 and points[1]["background"] == 0.5 and "BLEU-1" not in points[0]
    for bad, message in (("long:{}", "expected LABEL:TOKENS:DIR"), ("long:many:{}", "expected LABEL:TOKENS:DIR"),
                         ("long:100:{}/none", "no such file")):
        with pytest.raises(SystemExit, match=message):
            tool.main(["--compare", "--report", bad.format(report)])
    with pytest.raises(SystemExit, match="goes with --compare"):
        tool.main(["--report", f"long:100:{report}"])


def test_smoke_asr_scores_what_the_model_transcribed(tmp_path):
    from anygpt.eval.asr import error_rates

    tool = _tool()
    out = tmp_path / "asr"
    assert tool.main(["--smoke", "--out", str(out), "--abilities", "asr", "--curriculum", "0.5"]) == 0
    points = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert {p["ability"] for p in points} == {"asr"} and points[-1]["pairs"] > 0
    last = points[-1]
    rows = [json.loads(line) for line in (out / "outputs" / f"eval-{last['step']:06d}.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["text"] for r in rows)
    wer = error_rates([r["text"] for r in rows], [r["transcript"] for r in rows])["wer"]
    assert abs(last["wer"] - wer) < 1e-9 and abs(last["score"] - max(0.0, 1 - wer)) < 1e-9
    assert 0.0 <= last["score"] <= 1.0


def test_a_run_over_20_minutes_needs_long(tmp_path, monkeypatch):
    tool = _tool()
    with pytest.raises(SystemExit, match="--minutes: at most 20 .* --long allows more"):
        tool.main(["--minutes", "21", "--out", str(tmp_path / "x")])
    trained = []
    monkeypatch.setattr(tool, "train", lambda a: trained.append(a.minutes) or a.out.mkdir() or [])
    monkeypatch.setattr(tool, "plot", lambda points, png, key: png)
    tool.main(["--minutes", "60", "--long", "--out", str(tmp_path / "y")])
    assert trained == [60.0]
