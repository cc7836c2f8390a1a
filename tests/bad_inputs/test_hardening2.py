"""The findings of the second hardening probe (issue 27), one test per finding, in the order of
its root causes: 1 outputs that replace what is not theirs, 3 numbers out of range, 4 tampered
run, block and eval folders, 5 text that is not UTF-8, 6 weak messages, 7 a killed pipeline.
Each runs the command as a user does (in this process, or in a subprocess where a kill is
needed) and checks the one clean line, and that no input was changed."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bad_input_kit import assert_clean, children, manifest, run
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from blockfolders import write_block_folder  # noqa: E402  (tests/train's small block folders)

SRC = Path(__file__).resolve().parents[2] / "src"
MICRO = ["--preset", "micro", "--threads", "1", "--no-progress", "--precision", "fp32", "--log-every", "1"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(path: Path) -> Path:
    (path / "data").mkdir(parents=True)
    (path / "thesis.txt").write_text("four years of work\n")
    (path / "data" / "results.csv").write_text("a,b\n1,2\n")
    return path


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> Path:
    return write_block_folder(tmp_path_factory.mktemp("blocks") / "b", blocks={"text": 8})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, blocks) -> Path:
    """A finished 2-step run with a checkpoint per step (copied by each test that tampers with it)."""
    from anygpt.train import lm as train_lm

    run_dir = tmp_path_factory.mktemp("run") / "run"
    assert train_lm.main(["--blocks", str(blocks), "--out", str(run_dir), "--steps", "2", "--save-every", "1",
                          *MICRO]) == 0
    return run_dir


def train(capsys, blocks: Path, out: Path, *more):
    return run(capsys, "train", "lm", "--blocks", blocks, "--out", out, "--steps", "2", *MICRO, *more)


# ============================================================== 1. outputs that are not ours
def test_export_refuses_a_folder_holding_a_users_files(capsys, blocks, trained, tmp_path):
    target = users_folder(tmp_path / "mine")
    before = snapshot(target)
    res = train(capsys, blocks, trained, "--export", target, "--tokenizers", "image=compact")
    assert_clean(res, 1, r"mine: --export holds files anygpt did not write \(data, thesis\.txt\)")
    assert snapshot(target) == before


def test_export_replaces_its_own_earlier_export(capsys, blocks, trained, tmp_path):
    out = tmp_path / "model"
    export = ["--export", out, "--export-only", "--tokenizers", "image=compact"]
    assert train(capsys, blocks, trained, *export).rc == 0
    (out / "README.md").write_text("my notes\n")
    assert train(capsys, blocks, trained, *export).rc == 0
    assert (out / "README.md").read_text() == "my notes\n" and (out / "model.safetensors").is_file()


def test_save_pretrained_refuses_a_folder_holding_a_users_files(tmp_path):
    from anygpt.errors import OutputError
    from anygpt.loaders import load_model

    target = users_folder(tmp_path / "mine")
    before = snapshot(target)
    model = load_model("random-64x2")
    with pytest.raises(OutputError, match="holds files anygpt did not write"):
        model.save_pretrained(target)
    assert snapshot(target) == before
    model.save_pretrained(tmp_path / "new")
    model.save_pretrained(tmp_path / "new")  # our own folder: replaced
    assert (tmp_path / "new" / "anygpt.json").is_file()


def test_export_equal_to_out_keeps_the_checkpoints(capsys, blocks, trained):
    before = snapshot(trained / "checkpoints")
    res = train(capsys, blocks, trained, "--export", trained, "--export-only", "--tokenizers", "image=compact")
    assert_clean(res, 1, r"--export holds the run's checkpoints \(--out\)")
    assert snapshot(trained / "checkpoints") == before


def test_export_at_a_blocks_folder_keeps_the_blocks(capsys, blocks, trained, tmp_path):
    other = shutil.copytree(blocks, tmp_path / "other-blocks")
    from anygpt.files import mark_output_dir

    mark_output_dir(other, "blocks")  # as `anygpt blocks` marks its folders
    before = snapshot(other)
    res = train(capsys, blocks, trained, "--export", other, "--export-only", "--tokenizers", "image=compact")
    assert_clean(res, 1, r"other-blocks: --export holds our blocks folder, not a model folder")
    assert snapshot(other) == before
    res = train(capsys, blocks, trained, "--export", blocks, "--export-only", "--tokenizers", "image=compact")
    assert_clean(res, 1, r"--export is the same place as --blocks")


def _blocks_config(tmp_path: Path, corpus: Path, codes: Path | None = None) -> Path:
    ds = ({"name": "pics", "kind": "pair", "modality": "image", "corpus": str(corpus), "codes": str(codes)}
          if codes else {"name": "text", "kind": "text", "corpus": str(corpus)})
    cfg = tmp_path / "blocks.json"
    cfg.write_text(json.dumps({"block_len": 64, "datasets": [ds]}))
    return cfg


def test_blocks_out_equal_to_the_corpus_root_is_refused(capsys, kit, tmp_path):
    corpus = shutil.copytree(kit / "images", tmp_path / "corpus" / "images")
    (tmp_path / "corpus" / "index.json").write_text('{"corpus": "mine"}\n')
    before = snapshot(tmp_path / "corpus")
    res = run(capsys, "blocks", "--config", _blocks_config(tmp_path, corpus), "--out", tmp_path / "corpus",
              "--no-progress")
    assert_clean(res, 1, r"corpus: --out holds dataset 'text'.s corpus")
    assert snapshot(tmp_path / "corpus") == before


def test_blocks_out_equal_to_a_codes_folder_is_refused(capsys, kit, tmp_path):
    codes = tmp_path / "codes" / "images"
    codes.mkdir(parents=True)
    (codes / "meta.json").write_text("{}\n")
    res = run(capsys, "blocks", "--config", _blocks_config(tmp_path, kit / "images", codes), "--out", codes,
              "--no-progress")
    assert_clean(res, 1, r"--out is the same place as dataset 'pics'.s codes")
    assert [p.name for p in codes.iterdir()] == ["meta.json"]


def test_instruct_write_never_overwrites_a_manifest(capsys, kit, tmp_path):
    corpus = shutil.copytree(kit, tmp_path / "corpus", symlinks=True)
    before = (corpus / "images" / "manifest.jsonl").read_bytes()
    res = run(capsys, "instruct", "write", "--corpus", corpus, "--n", "2", "--out-file", corpus / "images" / "manifest.jsonl")
    assert_clean(res, 1, r"--out-file is inside --corpus")
    other = manifest(tmp_path / "elsewhere" / "manifest.jsonl", [{"id": "x", "path": "x.png"}])
    res = run(capsys, "instruct", "write", "--corpus", corpus, "--n", "2", "--out-file", other)
    assert_clean(res, 1, r"--out-file exists and is not a scripts file")
    assert (corpus / "images" / "manifest.jsonl").read_bytes() == before
    assert other.read_text() == '{"id": "x", "path": "x.png"}\n'


# ============================================================== 3. numbers out of range
TRAIN_FLAGS = [("--save-every", "0"), ("--log-every", "0"), ("--eval-every", "0"), ("--lr", "nan"), ("--lr", "-1"),
               ("--lora", "-1"), ("--threads", "-1"), ("--clip", "-1"), ("--warmup", "-5"), ("--max-minutes", "-1"),
               ("--weight-decay", "nan"), ("--min-lr-ratio", "2"), ("--keep", "0"), ("--val-blocks-per-dataset", "0")]


@pytest.mark.parametrize("flag,value", TRAIN_FLAGS, ids=[f"{f} {v}" for f, v in TRAIN_FLAGS])
def test_train_lm_numbers_are_range_checked(flag, value, capsys, tmp_path):
    res = run(capsys, "train", "lm", "--blocks", tmp_path / "none", "--out", tmp_path / "run", f"{flag}={value}")
    assert_clean(res, 2, rf"argument {flag}: {value} is not allowed; it must be")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("block_len,problem", [(-5, r"block_len: -5 is not allowed"),
                                               ("64", r"block_len: '64' is not a whole number"),
                                               (10**12, r"block_len: 1000000000000 is not allowed.*<= 131072")])
def test_blocks_config_block_len_is_range_checked(block_len, problem, capsys, kit, tmp_path):
    cfg = tmp_path / "blocks.json"
    cfg.write_text(json.dumps({"block_len": block_len, "datasets": [{"name": "t", "kind": "text",
                                                                     "corpus": str(kit / "images")}]}))
    res = run(capsys, "blocks", "--config", cfg, "--out", tmp_path / "out")
    assert_clean(res, 1, r"blocks\.json: not a valid blocks config \(" + problem)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("share", ["NaN", "Infinity", "-1"])
def test_blocks_config_shares_are_finite(share, capsys, kit, tmp_path):
    cfg = tmp_path / "blocks.json"
    cfg.write_text('{"block_len": 64, "datasets": [{"name": "t", "kind": "text", "corpus": "%s"}], '
                   '"shares": {"t": %s}}' % (kit / "images", share))
    res = run(capsys, "blocks", "--config", cfg, "--out", tmp_path / "out")
    assert_clean(res, 1, r"shares: 't': .* is not allowed")


@pytest.mark.parametrize("weight", ["nan", "inf", "0"])
def test_train_lm_block_weights_are_finite(weight, capsys, blocks, tmp_path):
    res = run(capsys, "train", "lm", "--blocks", f"{blocks}:{weight}", "--out", tmp_path / "run", *MICRO)
    assert_clean(res, 1, r"weight: .* is not allowed; it must be a number > 0")


def test_chat_seed_is_range_checked(capsys, tmp_path):
    res = run(capsys, "chat", "--model", "random-64x2", "--message", "hi", "--out", tmp_path, "--seed", str(2**64))
    assert_clean(res, 2, r"argument --seed: 18446744073709551616 is not allowed; it must be a whole number >= 0 "
                         r"and <= 9223372036854775807")


@pytest.mark.parametrize("limit", ["-3", "0"])
def test_eval_report_limit_is_at_least_one(limit, capsys, tmp_path):
    """docs/cli.md: a count of 0 or -3 is a usage error, never "all" (that is --all-items)."""
    res = run(capsys, "eval", "report", "--out", tmp_path / "r", "--limit", limit)
    assert_clean(res, 2, rf"argument --limit: {limit} is not allowed")
    assert "--limit 0" in (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--timeout", "nan"], r"argument --timeout: nan is not allowed"),
    (["--max-body-mb", "inf"], r"argument --max-body-mb: inf is not allowed"),
    (["--port", "70000"], r"argument --port: 70000 is not allowed; it must be a whole number >= 1 and <= 65535"),
    (["--api-key", ""], r"--api-key: empty; give a key, or leave the flag out"),
])
def test_serve_flags_are_range_checked(argv, message, capsys):
    assert_clean(run(capsys, "serve", "--model", "random-64x2", *argv), 2, message)


def test_serve_refuses_an_empty_api_key_variable(capsys, monkeypatch):
    monkeypatch.setenv("ANYGPT_API_KEY", "")
    assert_clean(run(capsys, "serve", "--model", "random-64x2"), 2, r"ANYGPT_API_KEY: set but empty")


# ============================================================== 4. tampered run, block and eval folders
def _tampered(trained: Path, tmp_path: Path) -> tuple[Path, Path]:
    run_dir = shutil.copytree(trained, tmp_path / "run")
    return run_dir, sorted((run_dir / "checkpoints").iterdir())[-1]


@pytest.mark.parametrize("step,message", [(-5, r"step: -5 is not allowed"), (10**30, r"step: 10+ is not allowed"),
                                          ("abc", r"step: 'abc' is not a whole number"),
                                          (1, r"step 1 is not the folder's step step-00000002")])
def test_a_checkpoint_step_out_of_range_is_named(step, message, capsys, blocks, trained, tmp_path):
    run_dir, ckpt = _tampered(trained, tmp_path)
    state = json.loads((ckpt / "state.json").read_text())
    state["step"] = step
    (ckpt / "state.json").write_text(json.dumps(state))
    res = train(capsys, blocks, run_dir)
    assert_clean(res, 1, r"step-00000002: unreadable checkpoint \(state\.json: " + message)


def test_garbage_rng_state_is_named(capsys, blocks, trained, tmp_path):
    run_dir, ckpt = _tampered(trained, tmp_path)
    state = json.loads((ckpt / "state.json").read_text())
    state["rng"]["python"] = [3, [1, 2, 3], None]
    (ckpt / "state.json").write_text(json.dumps(state))
    assert_clean(train(capsys, blocks, run_dir), 1, r"the saved random-number state is not usable")


def _exp_avg(ckpt: Path) -> str:
    """The name of one of Adam's first-moment tensors in a checkpoint's optimizer file."""
    from safetensors import safe_open

    with safe_open(str(ckpt / "optimizer.safetensors"), "pt") as f:
        return next(k for k in f.keys() if k.endswith("/exp_avg"))


def test_an_optimizer_entry_naming_a_missing_tensor_is_named(capsys, blocks, trained, tmp_path):
    run_dir, ckpt = _tampered(trained, tmp_path)
    text = (ckpt / "state.json").read_text()
    name = _exp_avg(ckpt)
    assert f'"__tensor__": "{name}"' in text
    (ckpt / "state.json").write_text(text.replace(f'"__tensor__": "{name}"', '"__tensor__": "opt/none"'))
    assert_clean(train(capsys, blocks, run_dir), 1,
                 r"optimizer\.safetensors does not hold what state\.json names")


def test_optimizer_tensors_of_the_wrong_shape_are_named(capsys, blocks, trained, tmp_path):
    from safetensors.torch import load_file, save_file

    run_dir, ckpt = _tampered(trained, tmp_path)
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    tensors[_exp_avg(ckpt)] = tensors[_exp_avg(ckpt)].flatten()[:3].clone()
    save_file(tensors, str(ckpt / "optimizer.safetensors"))
    assert_clean(train(capsys, blocks, run_dir), 1, r"optimizer state 'exp_avg' has shape \(3,\)")


def test_a_folder_named_step_final_is_not_a_checkpoint(capsys, blocks, trained, tmp_path):
    run_dir, ckpt = _tampered(trained, tmp_path)
    shutil.copytree(ckpt, run_dir / "checkpoints" / "step-final")
    res = train(capsys, blocks, run_dir)
    assert res.rc == 0 and "resumed" in res.out and "step-00000002 at step 2" in res.out, res.err


def _blocks_copy(blocks: Path, tmp_path: Path) -> tuple[Path, dict]:
    folder = shutil.copytree(blocks, tmp_path / "blocks")
    return folder, json.loads((folder / "index.json").read_text())


def test_an_index_claiming_more_blocks_than_its_shard_holds(capsys, blocks, tmp_path):
    folder, index = _blocks_copy(blocks, tmp_path)
    index["shards"][0]["blocks"] += 5
    (folder / "index.json").write_text(json.dumps(index))
    assert_clean(train(capsys, folder, tmp_path / "run"), 1, r"shard-00000\.npz: holds 8 blocks, index\.json says 13")


def test_an_index_naming_a_shard_in_another_folder(capsys, blocks, tmp_path):
    folder, index = _blocks_copy(blocks, tmp_path)
    shutil.copy(folder / "shard-00000.npz", tmp_path / "outside.npz")
    index["shards"][0]["file"] = "../outside.npz"
    (folder / "index.json").write_text(json.dumps(index))
    assert_clean(train(capsys, folder, tmp_path / "run"), 1, r"shards\[0\]\.file '\.\./outside\.npz': leads out of")


def test_a_shard_whose_labels_are_all_masked_does_not_train(capsys, blocks, tmp_path):
    folder, _ = _blocks_copy(blocks, tmp_path)
    with np.load(folder / "shard-00000.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"][:] = -100
    np.savez(folder / "shard-00000.npz", **arrays)
    assert_clean(train(capsys, folder, tmp_path / "run"), 1, r"every label is masked \(-100\): nothing to train on")


EVAL = ["eval", "reconstruction", "--modality", "image", "--tokenizer", "copy", "--no-progress"]


def _eval_manifest(kit: Path, tmp_path: Path, **change) -> Path:
    corpus = shutil.copytree(kit / "images", tmp_path / "corpus")
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    rows[0].update(change)
    return manifest(corpus / "manifest.jsonl", rows)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_eval_manifest_paths_stay_inside_the_corpus(how, capsys, kit, tmp_path):
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    corpus_root = tmp_path / "corpus"
    if how == "symlink":
        m = _eval_manifest(kit, tmp_path)
        (corpus_root / "files" / "0.png").unlink()
        (corpus_root / "files" / "0.png").symlink_to(outside)
    else:
        m = _eval_manifest(kit, tmp_path, path=str(outside) if how == "absolute" else "../../secret.png")
    res = run(capsys, *EVAL, "--manifest", m, "--out-file", tmp_path / "report" / "e.json")
    assert_clean(res, 1, r"manifest\.jsonl: item 'img0' path .*(an absolute path|leads out of)")
    assert not (tmp_path / "report").exists()


def test_a_coco_file_naming_an_image_outside_root(tmp_path):
    from anygpt.errors import UnsafePathError
    from anygpt.eval.benchmarks import read_coco_karpathy

    root = tmp_path / "coco"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.jpg")
    (root / "dataset_coco.json").write_text(json.dumps({"images": [
        {"filepath": "..", "filename": "secret.jpg", "split": "test", "sentences": [{"raw": "a cat"}], "cocoid": 1}]}))
    with pytest.raises(UnsafePathError, match=r"images\[0\]: filename '\.\./secret\.jpg': leads out of"):
        read_coco_karpathy(root)


@pytest.mark.parametrize("change,message", [
    ({"path": 7}, r"path 7 is not a string"),
    ({"bytes": "many"}, r"bytes 'many' is not a whole number of bytes"),
    ({"id": {"a": 1}}, r"id \{'a': 1\} is not a string or a whole number"),
    ({"captions": "a red square"}, r"captions 'a red square' is not a list of strings"),
], ids=["path-number", "bytes-text", "id-object", "captions-string"])
def test_manifest_fields_of_the_wrong_type_are_named(change, message, capsys, kit, tmp_path):
    m = _eval_manifest(kit, tmp_path, **change)
    res = run(capsys, *EVAL, "--manifest", m, "--out-file", tmp_path / "e.json")
    assert_clean(res, 1, r"manifest\.jsonl:1: " + message)


# ============================================================== 5. text that is not UTF-8
def test_a_message_that_is_not_utf8_is_named(capsys, tmp_path):
    bad = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # what argv holds for such bytes
    res = run(capsys, "chat", "--model", "random-64x2", "--message", bad, "--out", tmp_path)
    assert_clean(res, 1, r"the message is not valid UTF-8 text")


def test_stdin_lines_that_are_not_utf8_are_skipped(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9\n/quit\n"), encoding="utf-8"))
    res = run(capsys, "chat", "--model", "random-64x2", "--out", tmp_path, "--max-new-tokens", "2")
    assert res.rc == 0 and "Traceback" not in res.err
    assert "anygpt chat: stdin: that line is not valid UTF-8 text; it was skipped" in res.err


def test_a_whitespace_message_is_refused_like_an_empty_one():
    from anygpt.conversation import Conversation
    from anygpt.errors import ConversationError

    with pytest.raises(ConversationError, match="needs text or at least one attachment"):
        Conversation().add_user(" \n\t ")


# ============================================================== 6. weak messages
def test_a_session_past_the_context_hints_to_clear(capsys, tmp_path, monkeypatch):
    from anygpt.loaders import load_model

    positions = load_model("random-64x2").lm.config.max_position_embeddings
    long = " ".join(["word"] * positions)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"hello\n{long}\n/clear\nhello again\n"))
    res = run(capsys, "chat", "--model", "random-64x2", "--out", tmp_path, "--max-new-tokens", "2")
    assert res.rc == 0 and "Traceback" not in res.err
    assert "has outgrown the model's context: type /clear to start a new one" in res.err
    assert res.out.count("assistant:") == 2  # before the overflow, and after /clear


def test_a_missing_plugin_module_is_named(capsys, tmp_path):
    res = run(capsys, "chat", "--plugin", "no_such_plugin_module", "--message", "hi", "--out", tmp_path)
    assert_clean(res, 2, r"--plugin no_such_plugin_module: cannot import it")


def test_an_unknown_system_option_is_named(capsys, tmp_path):
    res = run(capsys, "eval", "report", "--out", tmp_path / "r", "--system-option", "tempreature=0.5")
    assert_clean(res, 1, r"--system-option tempreature: not an option of system 'anygpt'; its options: .*seed")


def test_an_export_naming_an_unknown_tokenizer_loader_is_refused(capsys, blocks, tmp_path):
    res = run(capsys, "train", "lm", "--blocks", blocks, "--out", tmp_path / "run", *MICRO, "--export",
              tmp_path / "model", "--tokenizers", "image=nosuch")
    assert_clean(res, 2, r"--tokenizers image=nosuch: no image tokenizer loader 'nosuch'; known: .*compact")
    assert not (tmp_path / "run").exists() and not (tmp_path / "model").exists()


# ============================================================== 7. a killed pipeline
def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_pipeline_leaves_no_stage_running(sig, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "anygpt.cli", "pipeline", "micro", "--out", str(tmp_path / "p")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stages: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not stages:
        stages = sorted(children(proc.pid))
        time.sleep(0.05)
    try:
        assert stages, f"the first stage never started ({proc.stderr.read().decode()[-500:]})"
        proc.send_signal(sig)
        proc.wait(timeout=150)
        deadline = time.time() + 90
        while time.time() < deadline and any(_alive(p) for p in stages):
            time.sleep(0.1)
        # stopped with the pipeline, not left to finish its work: the corpus's last part never came
        assert not (tmp_path / "p" / "data" / "images" / "manifest.jsonl").exists(), "the stage ran on after the kill"
        assert not any(_alive(p) for p in stages), "the stage outlived the killed pipeline"
    finally:
        for p in stages + [proc.pid]:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait()
