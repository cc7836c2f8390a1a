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
    assert {row["task"] for row in report["attributes"]} >= {"caption, test"}
    assert report["learning_curves"] == str(out / "eval" / "learning-curves.png") and Path(report["learning_curves"]).is_file()
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


def _args(**kw):
    import argparse

    return argparse.Namespace(**{"conversations": None, "pretrain_steps": None, "chat_steps": None, "image_steps": None,
                                 "eval_limit": None, "threads": 1, "tokenizers": [], "code_init": False,
                                 "init": None, **kw})  # the parser's defaults


def test_stages_are_anygpt_commands_with_the_presets_numbers(tmp_path):
    from anygpt.cli import COMMANDS
    from anygpt.pipeline import PIPELINE_PRESETS, stages_for

    stages = stages_for(PIPELINE_PRESETS["micro"], tmp_path, _args())
    names = [s.name for s in stages]
    assert names[0] == "data" and names[-3:] == ["pretrain", "chat", "eval"] and len(set(names)) == len(names)
    assert all(s.argv[0] in COMMANDS for s in stages)
    pretrain = dict(zip(stages[-3].argv, stages[-3].argv[1:]))
    assert (pretrain["--preset"], pretrain["--steps"]) == ("micro", "3")
    evaluate = stages[-1].argv
    assert evaluate[evaluate.index("--tasks"):][:4] == ["--tasks", "caption", "asr", "chat"]
    assert evaluate[evaluate.index("--threads") + 1] == "1"
    custom = stages_for(PIPELINE_PRESETS["tiny"], tmp_path, _args(pretrain_steps=7, threads=1))
    pretrain = dict(zip(custom[-3].argv, custom[-3].argv[1:]))
    assert (pretrain["--preset"], pretrain["--steps"], pretrain["--threads"]) == ("tiny", "7", "1")
    assert "--tasks" not in custom[-1].argv  # tiny: every task
    small = stages_for(PIPELINE_PRESETS["small"], tmp_path, _args())
    assert small[0].argv[small[0].argv.index("--preset") + 1] == "small"  # the corpus ten times tiny's
    pretrain = dict(zip(small[-4].argv, small[-4].argv[1:]))
    # the same LM, longer, on the long run's recipe (docs/training.md)
    assert (pretrain["--preset"], pretrain["--steps"], pretrain["--batch"], pretrain["--accum"], pretrain["--lr"]) == \
        ("tiny", "4000", "4", "4", "2e-4")
    assert pretrain["--tokenizers"] == "image=compact" and "speech=phones" in small[-4].argv
    chat = dict(zip(small[-3].argv, small[-3].argv[1:]))
    assert (chat["--steps"], chat["--batch"], chat["--lr"], chat["--export"]) == ("200", "4", "1e-4", str(tmp_path / "chat-model"))
    # small's third stage: the chat model on a mix weighted to image pairs, exported as the model
    images = dict(zip(small[-2].argv, small[-2].argv[1:]))
    assert (images["--init"], images["--steps"], images["--export"]) == (str(tmp_path / "chat-model"), "800", str(tmp_path / "model"))
    assert [v for k, v in zip(small[-2].argv, small[-2].argv[1:]) if k == "--blocks"] == \
        [str(tmp_path / "blocks-images"), f"{tmp_path / 'blocks-pretrain'}:0.5", f"{tmp_path / 'blocks-chat'}:0.25"]
    assert [s.name for s in stages_for(PIPELINE_PRESETS["small"], tmp_path, _args(image_steps=0))][-3:] == ["pretrain", "chat", "eval"]
    next(s for s in small if s.name == "blocks-pretrain").before()  # writes the blocks configs
    configs = {n: json.loads((tmp_path / "configs" / f"{n}.json").read_text())
               for n in ("pretrain", "pretrain-val", "chat", "images")}
    assert {c["block_len"] for c in configs.values()} == {1024}
    assert [d["name"] for d in configs["images"]["datasets"]] == ["image-pairs", "image-docs"]
    assert configs["images"]["shares"] == {"image-pairs": 0.85, "image-docs": 0.15} and configs["images"]["seed"] == 1
    assert configs["pretrain"]["shares"]["image-pairs"] == 0.35
    drops = {d["name"]: d.get("cfg_drop", 0) for d in configs["pretrain"]["datasets"]}
    assert drops["image-pairs"] == 0.1 and sum(drops.values()) == 0.1  # captions of image pairs only
    assert not any("cfg_drop" in d for d in configs["pretrain-val"]["datasets"])  # validation keeps every caption


def test_tokenizers_choose_the_codes_and_are_named_in_the_model(tmp_path):
    from anygpt.errors import UsageError
    from anygpt.pipeline import PIPELINE_PRESETS, stages_for

    def chosen(stage, flag):
        return stage.argv[stage.argv.index(flag) + 1:]

    stages = {s.name: s for s in stages_for(PIPELINE_PRESETS["micro"], tmp_path, _args(tokenizers=["image=grid"]))}
    assert chosen(stages["tokenize-images"], "--tokenizer")[0] == "grid"
    assert chosen(stages["tokenize-speech"], "--tokenizer")[0] == "compact"
    for lm_stage in ("pretrain", "chat"):  # the exported anygpt.json names the codes it was trained on
        assert chosen(stages[lm_stage], "--tokenizers")[:3] == ["image=grid", "music=compact", "speech=compact"]
    assert not any("--code-init" in s.argv for s in stages.values())
    stages = {s.name: s for s in stages_for(PIPELINE_PRESETS["micro"], tmp_path, _args(code_init=True))}
    assert [n for n, s in stages.items() if "--code-init" in s.argv] == ["pretrain"]  # chat starts from its weights
    for bad, words in ((["image=nonsense"], "no image tokenizer loader 'nonsense'"), (["smell=x"], "MODALITY=LOADER")):
        with pytest.raises(UsageError, match=words):
            stages_for(PIPELINE_PRESETS["micro"], tmp_path, _args(tokenizers=bad))


def test_init_warm_starts_pretraining_with_its_own_text_tokenizer(tmp_path):
    from anygpt.pipeline import PIPELINE_PRESETS, stages_for

    model = tmp_path / "model"
    stages = {s.name: s for s in stages_for(PIPELINE_PRESETS["small"], tmp_path / "out", _args(init=model))}
    pretrain = stages["pretrain"].argv
    assert pretrain[pretrain.index("--init") + 1] == str(model) and "--preset" not in pretrain
    stages["blocks-pretrain"].before()  # writes the blocks configs
    configs = tmp_path / "out" / "configs"
    assert json.loads((configs / "pretrain.json").read_text())["text_tokenizer"] == {"path": str(model)}
    # the held-out and chat blocks take the pretraining blocks' tokenizer, so one vocabulary throughout
    blocks = str(tmp_path / "out" / "blocks-pretrain")
    assert json.loads((configs / "pretrain-val.json").read_text())["text_tokenizer"] == {"path": blocks}
    assert json.loads((configs / "chat.json").read_text())["text_tokenizer"] == {"path": blocks}
    fresh = {s.name: s for s in stages_for(PIPELINE_PRESETS["small"], tmp_path / "fresh", _args())}
    fresh["blocks-pretrain"].before()
    assert json.loads((tmp_path / "fresh" / "configs" / "pretrain.json").read_text())["text_tokenizer"] == {"train_vocab": 4000}


def test_init_must_be_a_model_folder_and_not_with_code_init(tmp_path):
    (tmp_path / "model").mkdir()
    for extra, words in ((["--init", str(tmp_path / "model")], "no model.safetensors"),
                         (["--init", str(tmp_path / "model"), "--code-init"], "--code-init starts")):
        out = pipeline("--out", str(tmp_path / "p"), "--list", *extra)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "p").exists()


def test_run_stages_records_skips_done_stages_and_names_a_failure(tmp_path, monkeypatch, capsys):
    from anygpt import pipeline
    from anygpt.errors import AnyGPTError

    ran = []

    def fake_run_stage(cmd, env):
        ran.append(cmd[3:])
        if cmd[3] != "fail":
            (tmp_path / cmd[3]).write_text("done")
        return 0 if cmd[3] != "fail" else 3

    monkeypatch.setattr(pipeline, "run_stage", fake_run_stage)
    stages = [pipeline.Stage(n, [n], tmp_path / n) for n in ("one", "two")]
    record = pipeline.run_stages(stages, tmp_path, None)
    assert ran == [["one"], ["two"]] and list(record["stages"]) == ["one", "two"]
    assert record["stages"]["one"]["command"] == "anygpt one" and record["stages"]["one"]["runs"] == 1
    pipeline.run_stages(stages, tmp_path, None)
    assert len(ran) == 2 and capsys.readouterr().out.count(": done (") == 2
    (tmp_path / "two").unlink()  # its output gone: run again
    assert pipeline.run_stages(stages, tmp_path, "two")["stages"]["two"]["runs"] == 2
    with pytest.raises(AnyGPTError, match="stage 'fail' failed \\(exit 3\\); fix the cause and rerun"):
        pipeline.run_stages([pipeline.Stage("fail", ["fail"], tmp_path / "fail")], tmp_path, None)


def test_ship_model_replaces_the_folder_and_keeps_its_readme(tmp_path):
    from anygpt.errors import OutputError
    from anygpt.files import MARKER, mark_output_dir
    from anygpt.pipeline import ship_model

    model, dest = tmp_path / "model", tmp_path / "dest"
    model.mkdir()
    dest.mkdir()
    (model / "model.safetensors").write_bytes(b"new")
    (dest / "model.safetensors").write_bytes(b"old")
    (dest / "stale.bin").write_bytes(b"x")
    (dest / "README.md").write_text("kept")
    with pytest.raises(OutputError, match="--export holds files anygpt did not write"):
        ship_model(model, dest, {})  # not marked as ours: nothing is replaced
    assert (dest / "stale.bin").is_file()
    mark_output_dir(dest, "model")  # as a shipped asset folder is
    ship_model(model, dest, {"stages": {"data": {"seconds": 1.0}}})
    assert sorted(p.name for p in dest.iterdir()) == sorted([MARKER, "README.md", "model.safetensors", "pipeline.json"])
    assert (dest / "model.safetensors").read_bytes() == b"new" and (dest / "README.md").read_text() == "kept"
