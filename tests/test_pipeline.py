"""`anygpt pipeline micro`: the whole chain that builds anygpt-tiny, on a micro corpus and LM,
end to end (corpus, codes, conversations, blocks, pretraining, chat fine-tuning, eval report),
then resumed: a second run skips every finished stage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from anygpt.lm.checkpoint import ANYGPT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def pipeline(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anygpt.cli", "pipeline", "micro", *argv], env=ENV,
                          capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
def test_micro_pipeline_runs_end_to_end_and_resumes(tmp_path):
    from anygpt.loaders import load_model

    out = tmp_path / "micro"
    first = pipeline("--out", str(out), "--threads", "1", "--export", str(tmp_path / "shipped"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    record = json.loads((out / "pipeline.json").read_text())
    stages = [m.group(1) for m in re.finditer(r"^\[\d+/\d+\] (\S+): ", first.stdout, re.M)]
    assert list(record["stages"]) == stages and stages[0] == "data" and stages[-1] == "eval"
    assert all(s["seconds"] > 0 and s["command"].startswith("anygpt ") for s in record["stages"].values())
    report = json.loads((out / "eval" / "report.json").read_text())
    assert {row["task"].split(",")[0] for row in report["table"]} >= {"caption", "asr", "chat"}
    # the model came out of chat fine-tuning, names its tokenizers, loads, and was shipped
    cfg = json.loads((out / "model" / ANYGPT_CONFIG).read_text())
    assert set(cfg["tokenizers"]) == {"image", "speech", "music"}
    assert (tmp_path / "shipped" / "model.safetensors").read_bytes() == (out / "model" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "shipped" / "pipeline.json").read_text())["stages"].keys() == record["stages"].keys()
    assert load_model(tmp_path / "shipped").layout["image"].spec.vocab_size == 1024

    again = pipeline("--out", str(out), "--threads", "1")
    assert again.returncode == 0, again.stderr[-2000:]
    lines = re.findall(r"^\[\d+/\d+\] .*$", again.stdout, re.M)
    assert len(lines) == len(stages) and all(": done (" in line for line in lines)


def test_list_and_bad_stage(tmp_path):
    listed = pipeline("--out", str(tmp_path / "p"), "--list")
    assert listed.returncode == 0 and "anygpt train lm" in listed.stdout and not (tmp_path / "p").exists()
    bad = pipeline("--out", str(tmp_path / "p"), "--until", "nonsense")
    assert bad.returncode == 2 and bad.stderr.startswith("anygpt pipeline:") and "nonsense" in bad.stderr
    assert "Traceback" not in bad.stderr
