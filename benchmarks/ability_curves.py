"""Ability curves: train a short run on fresh scene pairs and score abilities as it learns.

    # answer-only loss against every token, 15 minutes each, one thread (run one after the other)
    PYTHONPATH=src python3 benchmarks/ability_curves.py --out runs/curves/answer --minutes 15 --answer-only
    PYTHONPATH=src python3 benchmarks/ability_curves.py --out runs/curves/all --minutes 15
    # both runs in one plot and one table
    PYTHONPATH=src python3 benchmarks/ability_curves.py --compare runs/curves/answer runs/curves/all --png cmp.png
    # with a long run's eval reports (anygpt eval report --out DIR), at the tokens each model saw
    PYTHONPATH=src python3 benchmarks/ability_curves.py --compare runs/curves/all \
        --report long:8600000:runs/eval-step1500 --report long:12000000:runs/eval-step2100 --png cmp.png
    # seconds, a micro model (what the test runs)
    PYTHONPATH=src python3 benchmarks/ability_curves.py --smoke --out /tmp/curves

Training streams unique caption <-> image pairs (anygpt.data.fresh_pairs: each scene rendered
and tokenized on the fly, both directions, the release's templates and instruction pools), so
no example repeats. It reuses the LM training core: the size presets and `token_loss` of
anygpt.train.lm, the step log of anygpt.train.core.TrainingRun (OUT/log.jsonl). Every
`--eval-every` minutes of training (evaluation time not counted) it scores the abilities on
fixed held-out items: captions (objects right, per attribute, optional beam search) and
text-to-image read back by the pixel scene checker (exact and per attribute, optional
classifier-free guidance) on scenes (anygpt.eval.scene_abilities); speech recognition WER on
test-split sentences spoken by flite (anygpt.eval.speech_abilities, `--abilities asr`). TTS
WER (Whisper on de-tokenized speech) and the requested modality are not probed here: the
reply's modality is chosen by a rule (anygpt.modality_choice), not learnt.

Writes OUT/points.jsonl (one row per evaluation and ability: tokens seen, training seconds,
the scores; rows of several runs can be plotted together), OUT/outputs/eval-NNNNNN.jsonl (what
the model wrote for every item), OUT/table.md (also printed) and OUT/curves.png (accuracy
against tokens seen; matplotlib if installed, else Pillow). The text tokenizer is a byte-level
BPE trained on the scene captions and instruction pools (`--text-vocab`). Timings depend on
the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ABILITIES = ("caption", "text-to-image", "asr")
IMAGE_ABILITIES = ("caption", "text-to-image")
SMOKE = dict(preset="micro", block_len=128, batch=2, minutes=0.1, eval_every=0.05, eval_items=3, text_vocab=300,
             chunk=8, warmup=2)


def build_parser() -> argparse.ArgumentParser:
    from anygpt.train.lm import MODEL_SIZES

    p = argparse.ArgumentParser(prog="ability_curves.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/curves/run"), help="run folder (default: runs/curves/run)")
    p.add_argument("--label", default=None, help="name of this run in tables and plots (default: the --out folder's name)")
    p.add_argument("--abilities", default=",".join(IMAGE_ABILITIES),
                   help=f"comma list of {', '.join(ABILITIES)} (default: caption,text-to-image); image abilities "
                        "train on fresh scene pairs, asr on sentences spoken by flite")
    p.add_argument("--minutes", type=float, default=15.0, help="training wall time, evaluation not counted (default: 15, at most 20 unless --long)")
    p.add_argument("--long", action="store_true",
                   help="allow --minutes over 20: a pair of recipes that 20 minutes cannot tell apart")
    p.add_argument("--eval-every", type=float, default=3.0, help="minutes of training between evaluations (default: 3)")
    p.add_argument("--eval-items", type=int, default=40, help="held-out scenes per ability (default: 40)")
    p.add_argument("--train-on-eval-scenes", action="store_true",
                   help="do not keep the evaluation's scenes out of the training stream (as the first runs did)")
    g = p.add_argument_group("recipe")
    g.add_argument("--scene-pool", type=int, default=0, metavar="N",
                   help="train on N scenes drawn once and repeated, as a corpus does (default: 0, every scene new)")
    g.add_argument("--answer-only", action="store_true", help="loss on the answer half of each pair only (default: every token)")
    g.add_argument("--curriculum", type=float, default=0.0, metavar="F",
                   help="one-object scenes and sentences of at most 6 words for the first F of the training time, "
                        "then up to 4 objects and 12 words (default: 0)")
    g.add_argument("--speech-share", type=float, default=0.5,
                   help="share of speech pairs when both image and speech abilities train (default: 0.5)")
    g.add_argument("--block-len", type=int, default=1024, help="tokens per block (default: 1024)")
    g.add_argument("--batch", type=int, default=4, help="blocks per step (default: 4)")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    g.add_argument("--warmup", type=int, default=30, help="warmup steps, then cosine to 0.1 x lr by time (default: 30)")
    g.add_argument("--preset", default="tiny", choices=sorted(MODEL_SIZES), help="LM size (default: tiny)")
    g.add_argument("--hidden", type=int, default=None, help="override the preset's width (heads: width / 64)")
    g.add_argument("--layers", type=int, default=None, help="override the preset's depth")
    g.add_argument("--text-vocab", type=int, default=1000,
                   help="BPE text vocabulary, at most (default: 1000; the captions and instruction pools give about 920)")
    g.add_argument("--to-text-share", type=float, default=0.5, help="share of image -> text pairs (default: 0.5)")
    g.add_argument("--cfg-drop", type=float, default=0.0, help="share of text -> image pairs trained without their caption "
                                                                "(classifier-free guidance; e.g. 0.1; default: 0)")
    g.add_argument("--cfg-scale", type=float, default=1.0, help="guidance scale when drawing (1: none; e.g. 3 with --cfg-drop)")
    g.add_argument("--beams", type=int, default=1, help="beam search width for captions (default: 1, greedy)")
    g.add_argument("--image-tokenizer", default="compact",
                   help="registered name (compact), NAME=FOLDER, or a folder of the compact architecture (default: compact)")
    g.add_argument("--speech-tokenizer", default="compact",
                   help="for asr: registered name (compact, units), NAME=FOLDER, or a codec folder (default: compact)")
    g.add_argument("--code-init", action="store_true",
                   help="start the media codes' embedding and head rows from the tokenizers' code vectors "
                        "(anygpt.lm.code_init) instead of random rows")
    g.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="autocast while training (default: bf16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--smoke", action="store_true", help="a micro model for seconds (the test's run)")
    p.add_argument("--compare", nargs="*", type=Path, metavar="OUT_OR_JSONL",
                   help="only plot and tabulate these runs' points together (no training)")
    p.add_argument("--report", action="append", default=[], metavar="LABEL:TOKENS:DIR",
                   help="with --compare: also the test-scene caption and text-to-image scores of an `anygpt eval "
                        "report --out DIR` of a model trained on TOKENS tokens (repeatable; one LABEL per run), "
                        "e.g. long:8600000:runs/eval-step1500")
    p.add_argument("--png", type=Path, default=None, help="with --compare: the plot to write (default: curves.png here)")
    p.add_argument("--plot-key", default="score",
                   help="what the plot shows: score (default) or an attribute of the table (background, kind_named ...)")
    return p


# ------------------------------------------------------------------------- model
def load_media_tokenizer(modality: str, value: str):
    """--image-tokenizer / --speech-tokenizer: a registered name, NAME=FOLDER, or a folder of the
    compact architecture."""
    from anygpt.modalities import load_tokenizer

    name, sep, folder = value.partition("=")
    if sep:
        if not Path(folder).is_dir():
            raise SystemExit(f"ability_curves.py: --{modality}-tokenizer: {folder}: no such folder")
        return load_tokenizer(modality, name, path=folder)
    if Path(value).is_dir():
        return load_tokenizer(modality, "compact", path=value)
    return load_tokenizer(modality, value)


def text_sample(seed: int, n: int = 3000) -> list[str]:
    """What the BPE learns from: the built-in texts (instruction pools) and n captions."""
    from anygpt.data import scenes
    from anygpt.lm.tiny import builtin_texts

    rng = random.Random(f"curves-bpe/{seed}")
    return builtin_texts() + [scenes.caption(scenes.sample_scene(rng), rng) for _ in range(n)]


def build_model(a, abilities: list[str]):
    """-> AnyGPT: a fresh LM of the preset for a BPE text vocabulary plus the layout of the
    media the abilities need (image, speech), with those tokenizers attached."""
    from anygpt.lm.expand import add_modality_tokens
    from anygpt.lm.text_tokenizer import train_text_tokenizer
    from anygpt.modalities import load_tokenizer
    from anygpt.model import AnyGPT
    from anygpt.train.lm import build_preset

    media = {}
    if set(abilities) & set(IMAGE_ABILITIES):
        media["image"] = load_media_tokenizer("image", a.image_tokenizer)
    if "asr" in abilities:
        media["speech"] = load_media_tokenizer("speech", a.speech_tokenizer)
    texts = text_sample(a.seed)
    if "speech" in media:
        from anygpt.data.fresh_pairs import speakable_sentences

        texts += random.Random(a.seed).sample(speakable_sentences("train"), 5000)
    tokenizer = train_text_tokenizer(texts, vocab_size=a.text_vocab)
    if len(tokenizer) < a.text_vocab:
        print(f"ability_curves.py: --text-vocab {a.text_vocab}: the BPE found only {len(tokenizer)} tokens in what it "
              f"learns from (the instruction pools and captions{', sentences' if 'speech' in media else ''})",
              file=sys.stderr, flush=True)
    layout = add_modality_tokens(tokenizer, [t.token_spec for t in media.values()])
    shape = {}
    if a.hidden:
        shape.update(hidden_size=a.hidden, intermediate_size=a.hidden * 8 // 3, num_attention_heads=max(1, a.hidden // 64),
                     num_key_value_heads=max(1, a.hidden // 64))
    if a.layers:
        shape["num_hidden_layers"] = a.layers
    lm = build_preset(a.preset, tokenizer, a.block_len, a.seed, **shape)
    if a.code_init:
        from anygpt.lm.code_init import init_code_rows

        init_code_rows(lm, layout, {m: t.lm_code_vectors() for m, t in media.items()}, seed=a.seed)
    return AnyGPT(lm, tokenizer, layout, tokenizers=media)


def optimizer(lm, lr: float) -> torch.optim.Optimizer:
    params = [p for p in lm.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lr_now(a, step: int, frac: float) -> float:
    """Linear warmup over --warmup steps, then cosine to 0.1 x lr over the training time."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


# ------------------------------------------------------------------------- evaluation
def evaluate(model, a, items, abilities, out: Path, point: dict) -> list[dict]:
    """Score each ability on its items ({"scenes": [...], "speech": [...]}); -> points rows;
    writes what the model wrote."""
    from anygpt.eval.scene_abilities import caption_scores, text_to_image_scores
    from anygpt.eval.speech_abilities import asr_scores

    model.lm.eval()
    rows, outputs = [], {}
    try:
        if "caption" in abilities:
            summary, outputs["caption"] = caption_scores(model, items["scenes"], beams=a.beams)
            rows.append({**point, "ability": "caption", "score": summary["object_accuracy"], **summary})
        if "text-to-image" in abilities:
            summary, outputs["text-to-image"] = text_to_image_scores(model, items["scenes"], cfg_scale=a.cfg_scale)
            rows.append({**point, "ability": "text-to-image", "score": summary["exact"], **summary})
        if "asr" in abilities:
            summary, outputs["asr"] = asr_scores(model, items["speech"], beams=a.beams)
            rows.append({**point, "ability": "asr", "score": summary["word_accuracy"], **summary})
    finally:
        model.lm.train()
    folder = out / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"eval-{point['step']:06d}.jsonl", "w", encoding="utf-8") as f:
        for ability, items_out in outputs.items():
            for r in items_out:
                f.write(json.dumps({"ability": ability, **{k: v for k, v in r.items() if k != "read"},
                                    **({"read": r["read"]} if "read" in r else {})}) + "\n")
    with open(out / "points.jsonl", "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


# ------------------------------------------------------------------------- training
def train(a) -> list[dict]:
    from anygpt.data.fresh_pairs import PairOptions, PairStream, SceneSource, SpokenSource
    from anygpt.eval.scene_abilities import scene_items
    from anygpt.eval.speech_abilities import spoken_items
    from anygpt.train.core import RunOptions, TrainingRun
    from anygpt.train.lm import token_loss

    torch.set_num_threads(a.threads)
    abilities = [s.strip() for s in a.abilities.split(",") if s.strip()]
    bad = [s for s in abilities if s not in ABILITIES]
    if bad or not abilities:
        raise SystemExit(f"ability_curves.py: --abilities: unknown {bad or 'none given'}; choose from {', '.join(ABILITIES)}")
    out, label = a.out, a.label or a.out.name
    if (out / "points.jsonl").exists():
        raise SystemExit(f"ability_curves.py: {out}/points.jsonl exists; use a new --out")
    model = build_model(a, abilities)
    lm = model.lm
    opts = PairOptions(answer_only=a.answer_only, cfg_drop=a.cfg_drop, to_text_share=a.to_text_share)
    sources, items = [], {}
    scene_source = speech_source = None
    if "image" in model.tokenizers:
        items["scenes"] = scene_items(a.eval_items, seed=1)
        exclude = frozenset() if a.train_on_eval_scenes else frozenset(it.spec for it in items["scenes"])
        scene_source = SceneSource(model.tokenizers["image"], seed=a.seed, chunk=getattr(a, "chunk", 64),
                                   exclude=exclude, pool=a.scene_pool)
        sources.append((scene_source, 1.0 - a.speech_share if "speech" in model.tokenizers else 1.0))
    if "speech" in model.tokenizers:
        speech_source = SpokenSource(model.tokenizers["speech"], seed=a.seed)
        sources.append((speech_source, a.speech_share if scene_source else 1.0))
        items["speech"] = spoken_items(model.tokenizers["speech"], a.eval_items, seed=1)
    stream = PairStream(model.sequence_encoder, sources, opts, seed=a.seed)
    opt = optimizer(lm, a.lr)
    recipe = {k: getattr(a, k) for k in ("abilities", "train_on_eval_scenes", "scene_pool", "answer_only", "curriculum", "speech_share", "block_len", "batch", "lr", "warmup", "preset",
                                          "hidden", "layers", "text_vocab", "to_text_share", "cfg_drop", "cfg_scale",
                                          "beams", "image_tokenizer", "speech_tokenizer", "code_init", "precision", "seed", "minutes")}
    run = TrainingRun(RunOptions(out=out, steps=10 ** 9, save_every=10 ** 9, log_every=10, progress=False,
                                 seed=a.seed, threads=a.threads), modules={"model": lm}, optimizer=opt,
                      config={"ability_curves": recipe}, desc=label)
    run.check_config()
    params = sum(p.numel() for p in lm.parameters())
    print(f"[{label}] {params / 1e6:.1f}M parameters, vocabulary {len(model.tokenizer)}, recipe {json.dumps(recipe)}",
          flush=True)
    budget, every = a.minutes * 60, a.eval_every * 60
    train_s, step, tokens, points = 0.0, 0, 0, []
    next_eval = 0.0
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")  # noqa: E731
    lm.train()
    for step_no in run.steps():
        if train_s >= next_eval:
            point = {"run": label, "step": step, "tokens": tokens, "pairs": stream.pairs_seen,
                     "train_s": round(train_s, 1), "recipe": recipe}
            t_eval = time.time()
            rows = evaluate(model, a, items, abilities, out, point)
            points += rows
            print(f"[{label}] step {step} tokens {tokens} train {train_s:.0f}s  " + "  ".join(
                f"{r['ability']} {r['score']:.3f}" for r in rows) + f"  (eval {time.time() - t_eval:.0f}s)", flush=True)
            next_eval += every
            if train_s >= budget:
                break
        t0 = time.time()
        early = train_s < a.curriculum * budget
        if scene_source:
            scene_source.max_objects = 1 if early else 4
        if speech_source:
            speech_source.max_words = 6 if early else 12
        blocks = [stream.block(a.block_len) for _ in range(a.batch)]
        ids = torch.from_numpy(np.stack([b[0] for b in blocks]))
        labels = torch.from_numpy(np.stack([b[1] for b in blocks]))
        for g in opt.param_groups:
            g["lr"] = lr_now(a, step, train_s / budget)
        with autocast():
            ce, n = token_loss(lm, ids, labels)
        loss = ce.sum() / n.sum().clamp(min=1)
        norm = run.optimise(loss)
        step, tokens = step + 1, tokens + ids.numel()
        train_s += time.time() - t0
        if train_s >= budget:
            next_eval = min(next_eval, train_s)  # the last evaluation, at the end of the budget
        run.record(tokens=ids.numel(), loss=loss.item(), grad_norm=norm, pairs=stream.pairs_seen)
    return points


# ------------------------------------------------------------------------- table and plot
def read_points(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        f = p / "points.jsonl" if p.is_dir() else p
        if not f.is_file():
            raise SystemExit(f"ability_curves.py: {f}: no points (run the tool with --out {p} first)")
        rows += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


REPORT_TASKS = {"caption": "caption-test-", "text-to-image": "text-to-image-test-"}


def report_points(spec: str) -> list[dict]:
    """"LABEL:TOKENS:DIR" -> the points of one `anygpt eval report` folder: its test-scene
    caption and text-to-image summaries under the probe's names (attr_/scene_ prefixes off;
    score: objects right for captions, read back exactly for drawings)."""
    try:
        label, tokens, folder = spec.split(":", 2)
        tokens = int(float(tokens))
    except ValueError:
        raise SystemExit(f"ability_curves.py: --report {spec!r}: expected LABEL:TOKENS:DIR") from None
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise SystemExit(f"ability_curves.py: --report: {path}: no such file (an `anygpt eval report --out` folder)")
    summaries = json.loads(path.read_text(encoding="utf-8")).get("summaries", {})
    rows = []
    for ability, prefix in REPORT_TASKS.items():
        summary = next((v for k, v in summaries.items() if k.startswith(prefix)), None)
        if summary is None:
            continue
        scores = {k.removeprefix("attr_").removeprefix("scene_"): v for k, v in summary.items()
                  if isinstance(v, (int, float)) and k.islower()}  # not BLEU-n, ROUGE-L, CIDEr
        score = scores["object_accuracy"] if ability == "caption" else scores["exact"]
        rows.append({"run": label, "ability": ability, "step": "", "tokens": tokens, "pairs": "", "train_s": "",
                     **scores, "score": score})
    if not rows:
        raise SystemExit(f"ability_curves.py: --report: {path} has no test-scene caption or text-to-image task")
    return rows


def table(points: list[dict]) -> str:
    """Markdown: one row per run, ability and evaluation."""
    keys = sorted({k for r in points for k in r if k not in ("run", "ability", "step", "tokens", "pairs", "train_s",
                                                            "recipe", "score")})
    head = ["run", "ability", "step", "tokens", "pairs", "train s", "score", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in points:
        cells = [r["run"], r["ability"], r["step"], r["tokens"], r["pairs"], r["train_s"], f"{r['score']:.3f}",
                 *[f"{r[k]:.3f}" if isinstance(r.get(k), (int, float)) else "" for k in keys]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def plot(points: list[dict], path: Path, key: str = "score") -> Path:
    """`key` (the score, or one attribute such as background) against tokens seen, one line
    per (run, ability) that has it."""
    from anygpt.eval.plots import line_plot

    series: dict[str, list[tuple[float, float]]] = {}
    for r in points:
        if isinstance(r.get(key), (int, float)):
            series.setdefault(f"{r['run']} {r['ability']}", []).append((r["tokens"], r[key]))
    title = ("score: caption objects right; text-to-image read back exactly; asr 1 - WER" if key == "score"
             else f"{key} (see anygpt.eval.scene_abilities)")
    return line_plot(series, path, xlabel="tokens seen", ylabel=key, title=title, ylim=(0, 1))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.report and a.compare is None:
        raise SystemExit("ability_curves.py: --report goes with --compare")
    if a.compare is not None:
        if not a.compare and not a.report:
            raise SystemExit("ability_curves.py: --compare: give run folders or --report")
        points = read_points(a.compare) + [r for spec in a.report for r in report_points(spec)]
        png = plot(points, a.png or Path("curves.png"), a.plot_key)
    else:
        if a.smoke:
            for k, v in SMOKE.items():
                setattr(a, k, v)
        if a.minutes > 20 and not a.long:
            raise SystemExit("ability_curves.py: --minutes: at most 20 (a probe, not a long run); --long allows more")
        points = train(a)
        png = plot(points, a.out / "curves.png", a.plot_key)
        (a.out / "table.md").write_text(table(points) + "\n", encoding="utf-8")
    print(table(points))
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    from anygpt.errors import AnyGPTError

    try:
        sys.exit(main())
    except AnyGPTError as e:  # a bad tokenizer name or folder: one line, no traceback
        print(f"ability_curves.py: {e}", file=sys.stderr)
        sys.exit(1)
