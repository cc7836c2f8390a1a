"""`anygpt pipeline tiny`: anygpt-tiny from nothing, end to end, in one resumable command.

    anygpt pipeline tiny --out runs/tiny                  # corpus ... eval report (hours on 2 cores)
    anygpt pipeline tiny --out runs/tiny --list           # the stages and the commands they run
    anygpt pipeline tiny --out runs/tiny --until blocks   # stop after a stage
    anygpt pipeline tiny --out runs/tiny --export src/anygpt/assets/anygpt-tiny   # and ship the result
    anygpt pipeline tiny --out runs/tiny-grid --tokenizers image=grid   # on the local image codes

Stages (each one `anygpt` command in a subprocess; the commands themselves resume after a kill):
    data          the tiny corpus (speech, music, images, text)          anygpt data build
    tokenize-*    media -> codes with the shipped tokenizers (--tokenizers)  anygpt tokenize
                  (each retrains with its own command: see its asset README)
    chat-*        any-to-any conversations, training and held-out       anygpt instruct write / realise
    blocks-*      packed blocks: pretraining, its held-out split, chat   anygpt blocks
    pretrain      text-centric pretraining of the tiny preset            anygpt train lm
    chat          fine-tuning on conversations (pretraining blocks mixed anygpt train lm --stage chat
                  in, so the pretraining abilities stay)
    eval          the paper's tasks on held-out data, one table          anygpt eval report
A finished stage is recorded in OUT/pipeline.json with its wall time and skipped on a rerun;
an unfinished one is run again and continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from anygpt.errors import AnyGPTError, UsageError
from anygpt.files import write_json
from anygpt.manifest import read_json

BLOCK_LEN = 4500  # the paper's
MODALITY_FOLDERS = {"image": "images", "music": "music", "speech": "speech"}


DEFAULT_SHARES = {"speech-pairs": 0.25, "image-pairs": 0.20, "image-docs": 0.05, "music-pairs": 0.20,
                  "music-docs": 0.05, "text": 0.25}  # a quarter of the tokens per modality


def pretrain_config(root: Path, corpus: Path, speech: bool = True, splits: tuple[str, ...] = ("train",),
                    tokenizer: dict | None = None, block_len: int = BLOCK_LEN, shares: dict | None = None,
                    cfg_drop: float = 0.0, seed: int = 0) -> dict:
    """The text-centric pretraining mix: pairs in both directions and interleaved documents per
    media modality, plain text, by `shares` (DEFAULT_SHARES; given shares name the datasets
    kept); cfg_drop: the share of text-to-image pairs with the caption dropped (classifier-free
    guidance)."""
    def media(name, kind, modality, folder, field):
        return {"name": name, "kind": kind, "modality": modality, "corpus": str(corpus / folder),
                "codes": str(root / "codes" / folder), "text_field": field, "splits": list(splits)}

    # music: random excerpts of 2-5 s of the 8 s clips (the release trains on 5 s excerpts of longer
    # pieces; the caption describes the piece); varied lengths let blocks fill, and at 200 music
    # tokens per second a document of four 5 s excerpts still fits a block. Conversations take the
    # same excerpts (`instruct realise --excerpt music=2,5`).
    excerpts = {"excerpt_seconds": [2.0, 5.0]}
    image_pairs = media("image-pairs", "pair", "image", "images", "caption")
    if cfg_drop:
        image_pairs["cfg_drop"] = cfg_drop
    datasets = [image_pairs,
                media("image-docs", "interleaved", "image", "images", "caption"),
                {**media("music-pairs", "pair", "music", "music", "caption"), **excerpts},
                {**media("music-docs", "interleaved", "music", "music", "caption"), **excerpts,
                 "per_document": [1, 4]},
                {"name": "text", "kind": "text", "corpus": str(corpus / "text"), "text_field": "text",
                 "splits": list(splits)}]
    if speech:
        datasets.insert(0, media("speech-pairs", "pair", "speech", "speech", "text"))
    if shares:
        datasets = [d for d in datasets if d["name"] in shares]
    shares = {d["name"]: (shares or DEFAULT_SHARES)[d["name"]] for d in datasets}
    config = {"block_len": block_len, "seed": seed, "text_tokenizer": tokenizer or {"train_vocab": 4000},
              "datasets": datasets}
    if splits == ("train",):
        config["shares"] = shares
    else:  # held-out blocks: every item once, no top-up from a second pass
        config["top_up"] = False
    return config


def chat_config(root: Path, conversations: Path, held_out: bool = False, block_len: int = BLOCK_LEN) -> dict:
    """Conversations in blocks, with the pretraining build's tokenizer (one vocabulary);
    held_out: every conversation once, no top-up from a second pass."""
    return {"block_len": block_len, "seed": 0, "text_tokenizer": {"path": str(root / "blocks-pretrain")},
            "datasets": [{"name": "chat", "kind": "chat", "corpus": str(conversations), "template": "MMGPT"}],
            "top_up": not held_out}


@dataclass(frozen=True)
class Schedule:
    """One training stage's optimiser numbers: blocks per micro-batch, micro-batches per step,
    peak learning rate (cosine after a linear warmup of `warmup` steps)."""

    batch: int
    accum: int
    lr: str
    warmup: int

    def argv(self) -> list[str]:
        return ["--batch", str(self.batch), "--accum", str(self.accum), "--lr", self.lr, "--warmup", str(self.warmup)]


@dataclass(frozen=True)
class PipelinePreset:
    """The numbers of one pipeline preset (flags override the step counts and the eval size)."""

    data: str  # `anygpt data build --preset`
    lm: str  # `anygpt train lm --preset`
    conversations: int
    test_conversations: int
    pretrain_steps: int
    chat_steps: int
    eval_limit: int
    eval_tasks: tuple[str, ...] = ()  # () = all
    block_len: int = BLOCK_LEN
    shares: dict | None = None  # pretraining shares per dataset (None: DEFAULT_SHARES)
    pretrain: Schedule = Schedule(2, 2, "6e-4", 60)
    chat: Schedule = Schedule(2, 2, "3e-4", 20)
    val_blocks_per_dataset: int = 4
    cfg_drop: float = 0.0  # share of text-to-image pretraining pairs with the caption dropped
    tokenizers: tuple[str, ...] = ()  # MODALITY=LOADER defaults (--tokenizers overrides)
    image_steps: int = 0  # a third stage after chat: a schedule weighted to image pairs (0: none)
    images: Schedule = Schedule(2, 4, "2e-4", 20)
    cfg_scale: float | None = None  # guidance its exports draw images with (anygpt.json; with cfg_drop)
    # single requests its exports write as the pretraining instruction (train lm --instruction-prompts)
    instruction_prompts: tuple[str, ...] = ()


PIPELINE_PRESETS = {
    "tiny": PipelinePreset("tiny", "tiny", 5000, 300, 600, 200, 40),
    # the long run's recipe (docs/training.md): the same tiny LM on the corpus's `small` preset
    # (ten times tiny's items; on tiny's, the speech-pair validation loss rose after 3.7 passes),
    # 1,024-token blocks (1.9x the tokens a second of 4,500 here), image pairs at 0.35 of the
    # tokens, 16 blocks a step at lr 2e-4 (bigger learning rates unsettled music), the phone
    # speech codes, and 10% of text-to-image captions dropped for guided drawing (greedy at
    # guidance 1.5: 0.23 of test scenes drawn exactly against 0.13 unguided, 0.08 sampled);
    # after chat, 800 steps weighted to image pairs (the shipped model's third stage: captions
    # 0.19 -> 0.40); single requests answered through the pretraining instructions, where the
    # abilities were learnt (drawing exact 0.27 against 0.03 through the chat template)
    "small": PipelinePreset("small", "tiny", 20000, 300, 4000, 200, 40, block_len=1024,
                            shares={"speech-pairs": 0.25, "image-pairs": 0.35, "image-docs": 0.05,
                                    "music-pairs": 0.15, "music-docs": 0.05, "text": 0.15},
                            pretrain=Schedule(4, 4, "2e-4", 20), chat=Schedule(4, 4, "1e-4", 20),
                            val_blocks_per_dataset=16, cfg_drop=0.1, tokenizers=("speech=phones",),
                            image_steps=800, cfg_scale=1.5,
                            instruction_prompts=("image=from_text,to_text", "speech=to_text")),
    # seconds to minutes: the whole chain on a micro corpus with a micro LM (tests, trying it out)
    "micro": PipelinePreset("micro", "micro", 40, 10, 3, 2, 1, ("caption", "asr", "chat")),
}


@dataclass
class Stage:
    name: str
    argv: list[str]  # after `anygpt`
    done: Path  # exists once the stage has finished its work
    before: object = None  # callable run before the command (writes configs)


def stages_for(preset: PipelinePreset, out: Path, a: argparse.Namespace) -> list[Stage]:
    data, seq = out / "data", out
    stages = [Stage("data", ["data", "build", "--preset", preset.data, "--out", str(data)], data / "index.json")]
    # modality -> loader name (each retrains with its own command); the flag over the preset's
    tok = pipeline_tokenizers([*preset.tokenizers, *a.tokenizers])
    for m, folder in MODALITY_FOLDERS.items():
        stages.append(Stage(f"tokenize-{folder}", ["tokenize", "--corpus", str(data / folder), "--modality", m,
                                                   "--tokenizer", tok[m], "--out", str(seq / "codes" / folder),
                                                   "--workers", "1"], seq / "codes" / folder / "meta.json"))
    codes = ["--codes", f"image={seq / 'codes' / 'images'}", "--codes", f"music={seq / 'codes' / 'music'}"]
    for name, split, n, seed in (("chat", "train", a.conversations or preset.conversations, 0),
                                 ("chat-test", "test", preset.test_conversations, 7)):
        stages.append(Stage(f"{name}-write", ["instruct", "write", "--corpus", str(data), "--split", split, "--n", str(n),
                                              "--seed", str(seed), "--out-file", str(seq / name / "scripts.jsonl")],
                            seq / name / "scripts.jsonl"))
        stages.append(Stage(f"{name}-realise", ["instruct", "realise", "--scripts", str(seq / name / "scripts.jsonl"),
                                                "--corpus", str(data), *codes, "--speech-tokenizer", tok["speech"],
                                                "--out", str(seq / name), "--excerpt", "music=2,5"],
                            seq / name / "conversations.jsonl"))
    # --init: a warm start; its weights go on training, so the blocks use its text tokenizer
    init_tokenizer = {"path": str(a.init)} if a.init else None
    configs = {
        "pretrain": pretrain_config(seq, data, tokenizer=init_tokenizer, block_len=preset.block_len,
                                    shares=preset.shares, cfg_drop=preset.cfg_drop),
        "pretrain-val": pretrain_config(seq, data, splits=("val",), tokenizer={"path": str(seq / "blocks-pretrain")},
                                        block_len=preset.block_len),
        "chat": chat_config(seq, seq / "chat", block_len=preset.block_len),
        "chat-val": chat_config(seq, seq / "chat-test", held_out=True, block_len=preset.block_len),
    }
    image_steps = preset.image_steps if a.image_steps is None else a.image_steps
    if image_steps:  # image pairs and documents alone, new directions and instructions (seed 1)
        configs["images"] = pretrain_config(seq, data, tokenizer={"path": str(seq / "blocks-pretrain")},
                                            block_len=preset.block_len, cfg_drop=preset.cfg_drop, seed=1,
                                            shares={"image-pairs": 0.85, "image-docs": 0.15})

    def write_configs():
        for name, cfg in configs.items():
            write_json(out / "configs" / f"{name}.json", cfg)

    for name in configs:
        stages.append(Stage(f"blocks-{name}", ["blocks", "--config", str(out / "configs" / f"{name}.json"),
                                               "--out", str(seq / f"blocks-{name}")],
                            seq / f"blocks-{name}" / "index.json", before=write_configs))
    lm = ["--threads", str(a.threads)]
    named = ["--tokenizers", *(f"{m}={name}" for m, name in tok.items())]  # recorded in the exported anygpt.json
    named += ["--cfg-scale", str(preset.cfg_scale)] if preset.cfg_scale else []
    named += ["--instruction-prompts", *preset.instruction_prompts] if preset.instruction_prompts else []

    def train_stage(name: str, argv: list[str], export: str, dtype: str) -> Stage:
        """A `train lm` stage: its own flags, then those every LM stage shares; done once exported."""
        return Stage(name, ["train", "lm", *argv, "--out", str(out / "runs" / name),
                            "--val-blocks-per-dataset", str(preset.val_blocks_per_dataset), "--save-every", "10",
                            "--export", str(out / export), "--export-dtype", dtype, *named, *lm],
                     out / export / "model.safetensors")

    pretrain_blocks, chat_blocks = str(seq / "blocks-pretrain"), str(seq / "blocks-chat")
    chat_export = "chat-model" if image_steps else "model"
    stages.append(train_stage("pretrain", ["--blocks", pretrain_blocks, "--val-blocks", str(seq / "blocks-pretrain-val"),
                                           *(["--init", str(a.init)] if a.init else ["--preset", preset.lm]),
                                           "--steps", str(a.pretrain_steps or preset.pretrain_steps),
                                           *preset.pretrain.argv(), "--eval-every", "100",
                                           *(["--code-init"] if a.code_init else [])], "pretrain-model", "fp32"))
    held_out = ["--val-blocks", str(seq / "blocks-chat-val"), "--val-blocks", str(seq / "blocks-pretrain-val")]
    stages.append(train_stage("chat", ["--stage", "chat", "--blocks", chat_blocks, "--blocks", f"{pretrain_blocks}:0.5",
                                       *held_out, "--init", str(out / "pretrain-model"),
                                       "--steps", str(a.chat_steps or preset.chat_steps), *preset.chat.argv(),
                                       "--eval-every", "50"], chat_export, "fp16"))
    if image_steps:  # the chat model, on a mix weighted to image pairs (pretraining and chat blocks kept in)
        stages.append(train_stage("images", ["--stage", "chat", "--blocks", str(seq / "blocks-images"),
                                             "--blocks", f"{pretrain_blocks}:0.5", "--blocks", f"{chat_blocks}:0.25",
                                             *held_out, "--init", str(out / chat_export), "--steps", str(image_steps),
                                             *preset.images.argv(), "--eval-every", "200"], "model", "fp16"))
    tasks = ["--tasks", *preset.eval_tasks] if preset.eval_tasks else []
    stages.append(Stage("eval", ["eval", "report", "--model", str(out / "model"), "--corpus", str(data),
                                 "--chat", str(seq / "chat-test"), "--out", str(out / "eval"),
                                 "--limit", str(a.eval_limit or preset.eval_limit), *tasks,
                                 *(x for s in stages if s.argv[:2] == ["train", "lm"]
                                   for x in ("--curves", str(out / "runs" / s.name))), *lm],
                        out / "eval" / "report.json"))
    return stages


def pipeline_tokenizers(overrides: list[str] | None) -> dict[str, str]:
    """--tokenizers image=grid ... -> {modality: loader} for every modality, "compact" (the shipped
    tiny tokenizers) where not named; each loader checked as `anygpt train lm` checks it."""
    from anygpt.train.lm import check_loaders

    chosen = dict.fromkeys(MODALITY_FOLDERS, "compact")
    for item in overrides or []:
        modality, sep, name = item.partition("=")
        if not sep or modality not in MODALITY_FOLDERS:
            raise UsageError(f"--tokenizers: {item!r} is not MODALITY=LOADER with MODALITY one of "
                             f"{', '.join(MODALITY_FOLDERS)} (e.g. image=grid)")
        chosen[modality] = name
    check_loaders([f"{m}={name}" for m, name in chosen.items()])
    return chosen


def run_stages(stages: list[Stage], out: Path, until: str | None) -> dict:
    record_path = out / "pipeline.json"
    record = read_json(record_path, what="pipeline record") if record_path.is_file() else {"stages": {}}
    if not isinstance(record, dict) or not isinstance(record.get("stages"), dict):
        raise AnyGPTError(f"{record_path}: not a pipeline record ({{\"stages\": {{...}}}}); delete it to run every stage again")
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for i, st in enumerate(stages, 1):
        if st.name in record["stages"] and st.done.exists():
            print(f"[{i}/{len(stages)}] {st.name}: done ({record['stages'][st.name]['seconds']:.0f} s)", flush=True)
        else:
            print(f"[{i}/{len(stages)}] {st.name}: anygpt {' '.join(st.argv)}", flush=True)
            if callable(st.before):
                st.before()
            t0 = time.time()
            rc = run_stage([sys.executable, "-m", "anygpt.cli", *st.argv], env)
            if rc != 0 or not st.done.exists():
                raise AnyGPTError(f"stage {st.name!r} failed (exit {rc}); fix the cause and rerun the same command "
                                  "to continue from this stage")
            runs = record["stages"].get(st.name, {"seconds": 0.0, "runs": 0})
            record["stages"][st.name] = {"seconds": runs["seconds"] + time.time() - t0, "runs": runs["runs"] + 1,
                                         "command": "anygpt " + " ".join(st.argv)}
            write_json(record_path, record)
        if st.name == until:
            break
    return record


def run_stage(argv: list[str], env: dict) -> int:
    """Run one stage's command and wait; -> its exit status. The stage dies with the pipeline:
    the kernel kills it if the pipeline dies, however (PR_SET_PDEATHSIG), and a SIGTERM or
    Ctrl-C to the pipeline is passed on to the stage (which saves and stops) before the
    pipeline exits. A stage never goes on writing into --out on its own."""
    import functools
    import signal

    from anygpt.workers import die_with_parent

    proc = subprocess.Popen(argv, env=env, preexec_fn=functools.partial(die_with_parent, os.getpid()))

    stopping: list[int] = []

    def pass_on(signum, frame):
        stopping.append(signum)
        proc.send_signal(signum)  # the wait below returns once the stage has stopped

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopping:
        raise SystemExit(128 + stopping[0])
    return rc


def main(argv: list[str] | None = None) -> int:
    from anygpt import cli_flags

    p = cli_flags.Parser(prog="anygpt pipeline", description=__doc__)
    p.add_argument("preset", choices=sorted(PIPELINE_PRESETS), help="tiny: anygpt-tiny (hours); small: the same LM on a corpus "
                                                           "ten times tiny's (a day or more); micro: the same chain "
                                                           "on a micro corpus and LM (minutes; a smoke test)")
    cli_flags.add_out(p, "folder for everything it writes; rerun with the same --out to resume (default: runs/tiny)",
                      required=False, default=Path("runs/tiny"))
    p.add_argument("--list", action="store_true", help="print the stages and their commands, run nothing")
    p.add_argument("--until", help="stop after this stage")
    p.add_argument("--export", type=Path, metavar="DIR", help="copy the final model folder here (e.g. src/anygpt/assets/anygpt-tiny)")
    p.add_argument("--conversations", type=cli_flags.positive_int, help="training conversations (tiny: 5000)")
    p.add_argument("--pretrain-steps", type=cli_flags.positive_int,
                   help="pretraining steps (tiny: 600 of 2 x 2 blocks; small: 4000 of 4 x 4)")
    p.add_argument("--chat-steps", type=cli_flags.positive_int,
                   help="chat fine-tuning steps (tiny: 200 of 2 x 2 blocks; small: 200 of 4 x 4)")
    p.add_argument("--image-steps", type=cli_flags.count_or_zero,
                   help="steps of the image-weighted stage after chat (small: 800 of 2 x 4 blocks; 0: none)")
    p.add_argument("--eval-limit", type=cli_flags.positive_int, help="items per eval task (tiny: 40)")
    p.add_argument("--code-init", action="store_true",
                   help="pretraining starts the media codes' rows from the tokenizers' code vectors (`train lm --code-init`)")
    p.add_argument("--init", type=Path, metavar="DIR",
                   help="pretraining starts from this model folder's weights and text tokenizer, with a fresh optimizer "
                        "and schedule (a warm start: --init src/anygpt/assets/anygpt-tiny)")
    p.add_argument("--tokenizers", nargs="*", default=[], metavar="MODALITY=LOADER",
                   help="tokenizers to train on, as in `anygpt train lm` (default: compact for every modality, "
                        "and small's speech=phones; e.g. image=grid for the local image codes)")
    cli_flags.add_threads(p)
    a = p.parse_args(argv)
    if a.init is not None and a.code_init:
        raise UsageError("--code-init starts the code rows of a new model; --init starts from trained ones: give one")
    if a.init is not None and not (a.init / "model.safetensors").is_file():
        raise UsageError(f"--init {a.init}: not a model folder (no model.safetensors in it)")
    stages = stages_for(PIPELINE_PRESETS[a.preset], a.out, a)
    if a.list:
        for i, st in enumerate(stages, 1):
            print(f"{i:2d}. {st.name:<22} anygpt {' '.join(st.argv)}")
        return 0
    if a.until and a.until not in {s.name for s in stages}:
        raise UsageError(f"--until: no stage {a.until!r}; stages: {', '.join(s.name for s in stages)}")
    a.out.mkdir(parents=True, exist_ok=True)
    record = run_stages(stages, a.out, a.until)
    total = sum(s["seconds"] for s in record["stages"].values())
    print(f"pipeline: {len(record['stages'])} stages done, {total / 3600:.2f} h in all; times in {a.out / 'pipeline.json'}")
    if a.export and (a.out / "model" / "model.safetensors").exists():
        ship_model(a.out / "model", a.export, record)
        print(f"shipped {a.out / 'model'} to {a.export}")
    return 0


def ship_model(model: Path, dest: Path, record: dict) -> Path:
    """Copy a model folder into `dest` (replaced whole, its README.md kept) with the pipeline's
    stage times in dest/pipeline.json."""
    import shutil

    from anygpt.files import atomic_folder

    with atomic_folder(dest, "model", flag="--export", inputs={"the trained model": model}) as tmp:
        for f in model.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        write_json(tmp / "pipeline.json", record)
    return dest


if __name__ == "__main__":
    sys.exit(main())
