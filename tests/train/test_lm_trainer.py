"""`anygpt train lm` on small block folders made here: learning, validation per dataset, exact
resume after kill -9, two processes (DDP and FSDP over gloo) against one, export, LoRA, and
the bad inputs of the issue."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anygpt.errors import AnyGPTError
from anygpt.files import MARKER
from anygpt.train import lm as train_lm
from blockfolders import SPEC, small_tokenizer, write_block_folder
from killed_runs import kill_then_rerun

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
MICRO = ["--preset", "micro", "--threads", "1", "--no-progress", "--precision", "fp32", "--log-every", "1"]


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> Path:
    return write_block_folder(tmp_path_factory.mktemp("blocks"), blocks={"speech-pairs": 24, "text": 16})


@pytest.fixture(scope="module")
def val_blocks(tmp_path_factory) -> Path:
    return write_block_folder(tmp_path_factory.mktemp("val"), blocks={"speech-pairs": 4, "text": 4}, seed=1)


def log_rows(run: Path, eval_rows: bool = False) -> list[dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if bool(r.get("eval")) == eval_rows]


def losses(run: Path) -> dict[int, float]:
    """Step -> train loss; a step logged again after a resume must repeat the same value."""
    out: dict[int, float] = {}
    for r in log_rows(run):
        assert out.get(r["step"], r["loss"]) == r["loss"], f"step {r['step']} logged twice with different losses"
        out[r["step"]] = r["loss"]
    return out


def cli(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anygpt.cli", "train", "lm", *argv], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_loss_falls_and_validation_is_per_dataset(tmp_path, blocks, val_blocks):
    run = tmp_path / "run"
    train_lm.main(["--blocks", str(blocks), "--val-blocks", str(val_blocks), "--out", str(run), "--steps", "40",
                   "--batch", "2", "--lr", "3e-3", "--warmup", "4", "--eval-every", "20", *MICRO])
    evals = log_rows(run, eval_rows=True)
    assert [e["step"] for e in evals] == [0, 20, 40]
    for name in ("val_speech-pairs", "val_text"):
        assert evals[-1][name] < evals[0][name] - 0.5, (name, evals)
    train = losses(run)
    assert np.mean([train[s] for s in range(36, 41)]) < np.mean([train[s] for s in range(1, 6)]) - 0.5
    per_dataset = [{k for k in r if k.startswith("loss_")} for r in log_rows(run)]
    assert set().union(*per_dataset) == {"loss_speech-pairs", "loss_text"}  # each step's datasets, by name
    assert any((run / "tensorboard").iterdir()), "no TensorBoard event file"
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.json", MARKER}
    assert json.loads((ckpt / "state.json").read_text())["data"] == {"next_position": 80}


def test_a_run_stopped_by_max_minutes_is_validated(tmp_path, blocks, val_blocks):
    run = tmp_path / "run"
    train_lm.main(["--blocks", str(blocks), "--val-blocks", str(val_blocks), "--out", str(run), "--steps", "1000",
                   "--max-minutes", "0.0001", "--eval-every", "500", *MICRO])
    evals = log_rows(run, eval_rows=True)
    # 6 ms allow a step or a few, as fast as the machine is: the run stops early and validates where it stopped
    stopped = json.loads((sorted((run / "checkpoints").iterdir())[-1] / "state.json").read_text())["step"]
    assert 1 <= stopped < 500
    assert [e["step"] for e in evals] == [0, stopped]
    assert set(evals[-1]) >= {"val_speech-pairs", "val_text"}


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    data = write_block_folder(tmp_path / "b", blocks={"a": 40}, block_len=512)
    args = ["--blocks", str(data), "--steps", "30", "--batch", "4", "--save-every", "2", "--keep", "2", *MICRO]
    ref = tmp_path / "ref"
    train_lm.main([*args, "--out", str(ref)])

    run = tmp_path / "killed"
    kill_then_rerun([sys.executable, "-m", "anygpt.train.lm", *args, "--out", str(run)], ENV, run, 4, 30)
    assert losses(run) == losses(ref)  # exactly: same blocks, same weights, same optimizer state
    a = sorted((ref / "checkpoints").iterdir())[-1]
    b = sorted((run / "checkpoints").iterdir())[-1]
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


@pytest.mark.parametrize("config", ["ddp-cpu.yaml", "fsdp.yaml"])
def test_two_processes_match_one(tmp_path, blocks, config):
    """accelerate launch with the shipped config, 2 processes on gloo: disjoint blocks, the same
    number per rank, identical weights on both ranks, and the loss of a 1-process run with the
    same global batch."""
    common = ["--blocks", str(blocks), "--steps", "5", "--accum", "2", "--record-ranks", *MICRO]
    one = tmp_path / "one"
    train_lm.main([*common, "--batch", "2", "--out", str(one)])
    two = tmp_path / "two"
    cfg = (ROOT / "configs" / "accelerate" / config).read_text().replace("num_processes: 8", "num_processes: 2")
    (tmp_path / config).write_text(cfg)
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(tmp_path / config),
                           "--num_processes", "2", "-m", "anygpt.train.lm", *common, "--batch", "1", "--out", str(two)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((two / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    p0, p1 = set(ranks[0]["positions"]), set(ranks[1]["positions"])
    assert len(ranks[0]["positions"]) == len(ranks[1]["positions"]) == 5 * 2 and not p0 & p1
    assert p0 | p1 == set(json.loads((one / "ranks" / "rank-0.json").read_text())["positions"])
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    l1, l2 = losses(one), losses(two)
    assert l1.keys() == l2.keys() == set(range(1, 6))
    np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-5)


def test_export_loads_as_anygpt_and_plain_hf(tmp_path, blocks):
    from transformers import AutoModelForCausalLM

    from anygpt.conversation import Conversation
    from anygpt.lm.generation import GenerationSettings
    from anygpt.model import AnyGPT

    run = tmp_path / "run"
    train_lm.main(["--blocks", str(blocks), "--out", str(run), "--steps", "3", "--export", str(tmp_path / "ours"),
                   "--export-hf", str(tmp_path / "hf"), "--tokenizers", *MICRO])
    model = AnyGPT.from_pretrained(tmp_path / "ours")
    assert model.lm.dtype == torch.float32 and model.layout["image"].spec.vocab_size == 16
    conv = Conversation()
    conv.add_user("hello")
    reply = model.generate(conv, settings=GenerationSettings(max_new_tokens=5), seed=0)
    assert isinstance(reply.text, str)
    assert not (tmp_path / "hf" / "anygpt.json").exists()
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype="auto")  # what config.json records
    assert hf.dtype == torch.bfloat16
    ours = dict(model.lm.named_parameters())
    for k, v in hf.named_parameters():
        torch.testing.assert_close(v.float(), ours[k])
    # re-export from the newest checkpoint, as after a run stopped by --max-minutes
    train_lm.main(["--blocks", str(blocks), "--out", str(run), "--steps", "3", "--export-only",
                   "--export", str(tmp_path / "again"), "--tokenizers", *MICRO])
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "ours" / "model.safetensors").read_bytes()
    assert "generation" not in json.loads((tmp_path / "again" / "anygpt.json").read_text())
    # how the model draws, recorded in the export for chat and eval to use
    train_lm.main(["--blocks", str(blocks), "--out", str(run), "--steps", "3", "--export-only", "--export",
                   str(tmp_path / "guided"), "--tokenizers", "--cfg-scale", "1.5", "--instruction-prompts", "image=from_text,to_text",
                   *MICRO])
    guided = AnyGPT.from_pretrained(tmp_path / "guided")
    assert guided.preset("image") == GenerationSettings(max_new_tokens=200, do_sample=False, cfg_scale=1.5)
    assert guided.instruction_prompts == {"image": ["from_text", "to_text"]}
    assert guided.preset("text") == model.preset("text")
    for bad, error in (("video=to_text", "the blocks have no 'video' codes"), ("image=sideways", "is not MODALITY=DIRECTION")):
        with pytest.raises(AnyGPTError, match=f"--instruction-prompts: .*{error}"):
            train_lm.main(["--blocks", str(blocks), "--out", str(run), "--steps", "3", "--export-only", "--export",
                           str(tmp_path / "bad"), "--tokenizers", "--instruction-prompts", bad, *MICRO])


def _hf_base(folder: Path) -> Path:
    """A plain HF causal LM whose tokenizer has no modality tokens (what --init starts from)."""
    from anygpt.lm.text_tokenizer import train_text_tokenizer
    from anygpt.lm.tiny import builtin_texts, tiny_llama

    tok = train_text_tokenizer(builtin_texts(), vocab_size=300)
    model = tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=3)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_lora_from_a_hf_model_trains_adapters_and_new_rows(tmp_path, blocks):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = _hf_base(tmp_path / "base")
    run = tmp_path / "lora"
    train_lm.main(["--blocks", str(blocks), "--init", str(base), "--lora", "4", "--out", str(run), "--steps", "6",
                   "--lr", "1e-2", "--export", str(tmp_path / "merged"), "--tokenizers",
                   *[a for a in MICRO if a not in ("--preset", "micro")]])
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    saved = load_file(str(ckpt / "model.safetensors"))
    assert saved and all("lora_" in k or "trainable_tokens" in k for k in saved), list(saved)[:5]
    before = AutoModelForCausalLM.from_pretrained(base)
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    old = before.get_input_embeddings().weight.shape[0]
    emb = after.get_input_embeddings().weight
    assert emb.shape[0] == len(small_tokenizer())
    torch.testing.assert_close(emb[:old], before.get_input_embeddings().weight.to(torch.bfloat16).float())
    q0 = before.model.layers[0].self_attn.q_proj.weight
    q1 = after.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q0.to(torch.bfloat16).float(), q1, atol=1e-3), "LoRA was not merged"


# ----------------------------------------------------------------- bad input

def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fails(argv: list[str], *needles: str) -> str:
    with pytest.raises(AnyGPTError) as e:
        train_lm.main(argv)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    return msg


def test_bad_block_folders(tmp_path, blocks):
    out = ["--out", str(tmp_path / "run"), "--steps", "2", *MICRO]
    _fails(["--blocks", str(tmp_path / "nothing"), *out], str(tmp_path / "nothing"), "no such block folder")
    (tmp_path / "empty").mkdir()
    _fails(["--blocks", str(tmp_path / "empty"), *out], "index.json", "no block index")
    empty = write_block_folder(tmp_path / "zero", blocks={"a": 0})
    _fails(["--blocks", str(empty), *out], "holds no blocks")

    broken = write_block_folder(tmp_path / "broken", blocks={"a": 8}, per_shard=4)
    shard = broken / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    _fails(["--blocks", str(broken), *out, "--batch", "8"], str(shard), "corrupt or truncated")

    other = write_block_folder(tmp_path / "other", blocks={"a": 4}, tokenizer=small_tokenizer(text_vocab=280))
    _fails(["--blocks", str(blocks), "--blocks", str(other), *out], str(other), "another vocabulary")


def test_a_folder_of_some_modalities_mixes_with_one_of_all(tmp_path):
    """Image-pair blocks alone (a folder that records the image spec only) train beside blocks of
    every modality built with the same tokenizer; the model exported knows every modality."""
    from dataclasses import replace

    from anygpt.token_spec import TokenSpec

    speech = TokenSpec("speech", "S", "<sosp>", "<eosp>", 8, 1, None)
    tok = small_tokenizer(specs=[SPEC, speech])
    images = write_block_folder(tmp_path / "images", blocks={"image-pairs": 4}, tokenizer=tok)
    full = write_block_folder(tmp_path / "full", blocks={"a": 4}, tokenizer=tok, specs=[SPEC, speech])
    out = ["--out", str(tmp_path / "run"), "--steps", "1", *MICRO]
    assert train_lm.main(["--blocks", str(images), "--blocks", f"{full}:0.5", *out,
                          "--export", str(tmp_path / "model"), "--tokenizers", "image=compact", "speech=compact"]) == 0
    exported = json.loads((tmp_path / "model" / "anygpt.json").read_text())
    assert [s["name"] for s in exported["specs"]] == ["image", "speech"]
    odd = write_block_folder(tmp_path / "odd", blocks={"a": 4}, tokenizer=tok,
                             specs=[SPEC, replace(speech, codebook_size=9)])
    _fails(["--blocks", str(full), "--blocks", str(odd), "--out", str(tmp_path / "r2"), "--steps", "1", *MICRO],
           str(odd), "another vocabulary")


def test_blocks_built_for_another_vocabulary_than_init(tmp_path):
    base = _hf_base(tmp_path / "base")
    blocks = write_block_folder(tmp_path / "b", blocks={"a": 4}, tokenizer=small_tokenizer(text_vocab=280))
    _fails(["--blocks", str(blocks), "--init", str(base), "--out", str(tmp_path / "r"), "--steps", "1",
            "--threads", "1", "--no-progress"], str(blocks), "another vocabulary", str(base))


def test_ids_outside_the_vocabulary(tmp_path):
    blocks = write_block_folder(tmp_path / "b", blocks={"a": 4})
    with np.load(blocks / "shard-00000.npz") as z:
        ids, labels, source = z["input_ids"].copy(), z["labels"], z["source"]
    ids[0, 5] = 10**6
    np.savez(blocks / "shard-00000.npz", input_ids=ids, labels=labels, source=source)
    _fails(["--blocks", str(blocks), "--out", str(tmp_path / "r"), "--steps", "1", "--batch", "4", *MICRO],
           "shard-00000.npz", "outside the model's vocabulary")


def test_init_that_is_not_a_model(tmp_path, blocks):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    _fails(["--blocks", str(blocks), "--init", str(tmp_path / "notes"), "--out", str(tmp_path / "r"), "--steps", "1",
            "--threads", "1", "--no-progress"], str(tmp_path / "notes"), "config.json")


def test_resume_folder_from_another_config_is_refused_and_untouched(tmp_path, blocks):
    run = tmp_path / "run"
    train_lm.main(["--blocks", str(blocks), "--out", str(run), "--steps", "2", *MICRO])
    before = _digest(run)
    _fails(["--blocks", str(blocks), "--out", str(run), "--steps", "2", "--lr", "0.5", *MICRO],
           str(run), "another configuration", "lr")
    assert _digest(run) == before


def test_cli_reports_errors_without_traceback(tmp_path):
    proc = cli("--blocks", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *MICRO)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("anygpt train lm:") and "Traceback" not in proc.stderr
    assert "no such block folder" in proc.stderr


def test_code_init_starts_the_code_rows_from_the_tokenizer(tmp_path, blocks):
    """--code-init: the image codes' embedding and head rows are the grid tokenizer's code vectors,
    projected (one step at lr 1e-9 keeps them); blocks of another codebook are refused by name."""
    from anygpt.layout import TokenLayout
    from anygpt.lm.code_init import projected_rows
    from anygpt.modalities import load_tokenizer
    from anygpt.nn.weights import read_safetensors

    grid = load_tokenizer("image", "grid")
    spec = grid.token_spec
    tok = small_tokenizer(spec=spec)
    folder = write_block_folder(tmp_path / "grid-blocks", blocks={"image-pairs": 4}, tokenizer=tok, spec=spec)
    export = tmp_path / "export"
    train_lm.main(["--blocks", str(folder), "--out", str(tmp_path / "run"), "--steps", "1", "--lr", "1e-9",
                   "--warmup", "0", "--code-init", "--tokenizers", "image=grid", "--export", str(export),
                   "--export-dtype", "fp32", *MICRO])
    weights = read_safetensors(export / "model.safetensors")
    r = TokenLayout.from_tokenizer(tok, [spec])["image"]
    embed, head = weights["model.embed_tokens.weight"], weights["lm_head.weight"]
    want = projected_rows(grid.lm_code_vectors(), embed.shape[1], 0.02, seed=0)
    for w in (embed, head):
        assert torch.allclose(w[r.code_offset:r.code_end], want, atol=1e-5)
    _fails(["--blocks", str(blocks), "--out", str(tmp_path / "run2"), "--steps", "1", "--code-init",
            "--tokenizers", "image=grid", *MICRO], "--code-init", "1024 code vectors for 16 codes", "--tokenizers")
