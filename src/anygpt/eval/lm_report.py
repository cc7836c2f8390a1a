"""`anygpt eval report`: one trained model on the paper's tasks, on held-out data, in one table.

    anygpt eval report --model anygpt-tiny --corpus data/tiny --chat data/tiny-seq/chat-test \\
        --out runs/eval-anygpt-tiny --limit 40 [--curves runs/tiny/runs/pretrain --curves runs/tiny/runs/chat]

The analogue of the paper's Tables 2-6 on our corpora: captioning and text-to-image on test
scenes and on scenes of held-out (shape, colour) combinations, ASR on held-out sentences
(against Whisper tiny.en on the same clips), TTS on held-out sentences (against the WER of the
source clips), voice cloning from 3 s prompts of held-out speakers, music captioning and
text-to-music on held-out pieces, and, with --chat, how often a held-out conversation's
assistant turn is answered in the modality it asks for. Captions and text-to-image are also
split by scene attribute (background, count, size, position, colour, shape, exact), and
`--curves RUN` plots a training run's validation losses to OUT/learning-curves.png (the
pipeline passes its pretraining and chat runs). Every task's JSON report and generated
media stay under OUT (media under OUT/<task>.media/) for a person to look at and listen to;
OUT/report.json holds the table. A finished task is not run again (delete its JSON to redo it).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from anygpt.errors import AnyGPTError
from anygpt.manifest import read_json


@dataclass(frozen=True)
class Row:
    """One line of the table: a task run on one split, the metric read from its summary, and
    the target (None: reported only) with the direction it must be met in."""

    name: str
    task: str
    corpus: str  # folder under --corpus
    split: str
    metric: str
    target: float | None = None
    at_most: bool = False  # True: the value must be <= target (error ratios)
    where: tuple[tuple[str, str], ...] = ()
    system: str = "anygpt"


ROWS = (
    Row("caption, test scenes: objects named right", "caption", "images", "test", "object_accuracy", 0.90,
        where=(("kind", "scene"),)),
    Row("caption, test scenes: CIDEr", "caption", "images", "test", "cider", where=(("kind", "scene"),)),
    Row("caption, held-out combinations: objects named right", "caption", "images", "heldout_combos",
        "object_accuracy", where=(("kind", "scene"),)),
    Row("text-to-image, test scenes: exact", "text-to-image", "images", "test", "scene_exact", 0.70,
        where=(("kind", "scene"),)),
    Row("text-to-image, held-out combinations: exact", "text-to-image", "images", "heldout_combos", "scene_exact",
        where=(("kind", "scene"),)),
    Row("asr, held-out sentences: WER", "asr", "speech", "heldout_sentences", "wer"),
    Row("asr, held-out sentences: Whisper tiny.en WER", "asr", "speech", "heldout_sentences", "wer", system="whisper"),
    Row("asr: WER / Whisper's", "asr", "speech", "heldout_sentences", "wer_ratio", 1.5, at_most=True),
    Row("tts, held-out sentences: WER", "tts", "speech", "heldout_sentences", "wer"),
    Row("tts: WER / source clips'", "tts", "speech", "heldout_sentences", "wer_ratio", 3.0, at_most=True),
    Row("voice clone, held-out speakers: similarity to prompt", "voice-clone", "speech", "heldout_speakers",
        "speaker_similarity", 0.75),
    Row("voice clone, held-out speakers: WER", "voice-clone", "speech", "heldout_speakers", "wer"),
    Row("music caption, held-out pieces: attributes named", "music-caption", "music", "heldout_pieces", "attr_mean"),
    Row("text-to-music, held-out pieces: attributes matched", "text-to-music", "music", "heldout_pieces",
        "attribute_match", 0.60),
    Row("text-to-music, real clips (the scorers' ceiling)", "text-to-music", "music", "heldout_pieces",
        "attribute_match", system="reference"),
    Row("chat, held-out conversations: requested modality (the model alone)", "chat", "", "", "modality_rate", 0.98),
    Row("chat: requested modality as `anygpt chat` asks (its rule)", "chat", "", "", "modality_rate_rule", 0.98),
    Row("chat: media segments well-formed", "chat", "", "", "well_formed", 1.0),
)
MUSIC_ATTRIBUTES = ("mode", "tempo_octave", "register")  # key or mode, tempo, register
# The scene tasks per attribute: column -> the summary key of captions (a caption's objects
# counted by kind, size and position; colour and shape: the share of the scene's objects whose
# colour or shape the caption names) and of text-to-image (the scene checker's reading).
SCENE_ATTRIBUTES = {
    "background": ("attr_background", "scene_background"),
    "count": ("attr_count", "scene_count"),
    "size": ("attr_sizes", "scene_size"),
    "position": ("attr_positions", "scene_positions"),
    "colour": ("color_named", "scene_color"),
    "shape": ("shape_named", "scene_shape"),
    "exact": ("attr_exact", "scene_exact"),
}


def run_key(row: Row) -> str:
    where = "-".join(f"{k}={v}" for k, v in row.where)
    return "-".join(x for x in (row.task, row.split, where, row.system) if x)


def derived(summary: dict, row: Row, summaries: dict[str, dict]) -> Any:
    """The row's metric: read from the task summary, or computed from two of them."""
    if row.metric == "wer_ratio":
        other = Row("", "asr", "speech", row.split, "wer", system="whisper")
        base = summaries.get(run_key(other), {}).get("wer")
        model = summary.get("wer")
        return model / base if model is not None and base else None
    if row.metric == "attribute_match":
        vals = [summary.get(f"{k}_accuracy") for k in MUSIC_ATTRIBUTES]
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None
    if row.metric == "attr_mean":
        vals = [v for k, v in summary.items() if k.startswith("attr_") and k != "attr_all" and isinstance(v, float)]
        return sum(vals) / len(vals) if vals else None
    return summary.get(row.metric)


def run_task(row: Row, args, system_for: Callable[[str, list], Any], out: Path) -> dict:
    """Run (or read back) the task of one row; -> its report."""
    from anygpt.eval.benchmarks import read_eval_items
    from anygpt.eval.report import write_json
    from anygpt.eval.tasks import TASKS, TaskContext

    path = out / f"{run_key(row)}.json"
    if path.is_file():
        return read_json(path, what="task report")
    manifest = Path(args.corpus) / row.corpus / "manifest.jsonl"
    items = read_eval_items(manifest, row.split)
    for k, v in row.where:
        items = [i for i in items if i.matches(k, v)]
    if not items:
        raise AnyGPTError(f"{manifest}: no items in split {row.split!r}" + (f" with {dict(row.where)}" if row.where else ""))
    pool = list(items)
    if args.limit is not None and args.limit < len(items):
        step = len(items) / args.limit
        items = [items[int(k * step)] for k in range(args.limit)]
    ctx = TaskContext(workdir=out / f"{run_key(row)}.media", source=f"{manifest}[{row.split}]",
                      system_name=row.system if row.system != "anygpt" else f"anygpt:{args.model}",
                      progress=not args.no_progress, meteor=False, extra={"pool": pool})
    report = TASKS[row.task](items, system_for(row.system, pool), ctx)
    write_json(report, path)
    return report


def build_table(summaries: dict[str, dict]) -> list[dict]:
    table = []
    for row in ROWS:
        key = run_key(row)
        if key not in summaries:
            continue
        value = derived(summaries[key], row, summaries)
        met = None
        if row.target is not None and value is not None:
            met = value <= row.target if row.at_most else value >= row.target
        table.append({"task": row.name, "value": value,
                      "target": (f"<= {row.target}" if row.at_most else f">= {row.target}") if row.target is not None else "-",
                      "met": met})
    return table


def attribute_table(summaries: dict[str, dict]) -> list[dict]:
    """The caption and text-to-image rows of the table, split by scene attribute."""
    table = []
    for row in ROWS:
        if row.task not in ("caption", "text-to-image") or row.metric not in ("object_accuracy", "scene_exact"):
            continue
        summary = summaries.get(run_key(row))
        if summary is None:
            continue
        which = 0 if row.task == "caption" else 1
        table.append({"task": f"{row.task}, {row.split}",
                      **{col: summary.get(keys[which]) for col, keys in SCENE_ATTRIBUTES.items()}})
    return table


def training_log(run: Path) -> Path:
    """--curves RUN -> its log.jsonl (RUN may be the file itself), or an error naming it."""
    log = run / "log.jsonl" if run.is_dir() else run
    if not log.is_file():
        raise AnyGPTError(f"--curves: {log}: no such file (a folder of `anygpt train lm --out`, or its log.jsonl)")
    return log


def plot_learning_curves(runs: list[Path], path: Path) -> Path:
    """Validation losses (the "val_*" terms of `anygpt train lm`'s OUT/log.jsonl) of each run
    against steps -> PNG."""
    from anygpt.eval.plots import line_plot
    from anygpt.manifest import read_jsonl

    series: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        log = training_log(run)
        for row in read_jsonl(log, lenient=True):  # a run still training may have a half-written last line
            if row.get("eval"):
                for k, v in row.items():
                    if k.startswith("val_") and isinstance(v, (int, float)):
                        series.setdefault(f"{log.parent.name} {k[4:]}", []).append((row["step"], v))
    if not series:
        raise AnyGPTError(f"--curves: no validation rows (val_*) in {', '.join(map(str, runs))}")
    return line_plot(series, path, xlabel="training steps", ylabel="validation loss (nats per token)",
                     title="learning curves: validation loss per dataset")


def main(argv: list[str] | None = None) -> int:
    from anygpt import cli_flags

    p = cli_flags.Parser(prog="anygpt eval report", description=__doc__)
    cli_flags.add_model(p, "anygpt-tiny")
    cli_flags.add_corpus(p, "corpus root built by `anygpt data build` (default: data/tiny)", default=Path("data/tiny"))
    p.add_argument("--chat", type=Path, help="realised held-out conversations (anygpt instruct write --split test, "
                                             "then instruct realise): the chat row")
    cli_flags.add_out(p, "folder for the reports and generated media; a rerun skips finished tasks "
                         "(default: runs/eval-report)", required=False, default=Path("runs/eval-report"))
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--limit", type=cli_flags.positive_int, default=40,
                       help="items per task, evenly spaced (default: 40)")
    limit.add_argument("--all-items", dest="limit", action="store_const", const=None,
                       help="every item of each task (no --limit)")
    p.add_argument("--tasks", nargs="*", help="only these tasks (caption, text-to-image, asr, tts, voice-clone, "
                                              "music-caption, text-to-music, chat)")
    p.add_argument("--system-option", action="append", default=[], metavar="KEY=VALUE",
                   help="options of the anygpt system (anygpt.eval.anygpt_system), e.g. speech_top_p=0.7")
    p.add_argument("--curves", type=Path, action="append", default=[], metavar="RUN",
                   help="also plot the validation losses of this training run (an `anygpt train lm --out` folder "
                        "or its log.jsonl; repeatable) to OUT/learning-curves.png")
    cli_flags.add_threads(p)
    cli_flags.add_no_progress(p)
    a = p.parse_args(argv)
    from anygpt.eval.report import format_table, write_json
    from anygpt.eval.systems import load_system

    cli_flags.set_threads(a.threads)
    for run in a.curves:  # before hours of tasks
        training_log(run)
    a.out.mkdir(parents=True, exist_ok=True)
    options = cli_flags.key_values(a.system_option, "--system-option")
    from anygpt.eval.anygpt_system import AnyGPTSystem
    from anygpt.eval.systems import check_options

    check_options(AnyGPTSystem, options, "system 'anygpt'")  # before any task runs
    shared: dict[str, Any] = {}

    def system_for(name: str, pool: list) -> Any:
        if name == "anygpt":
            if "anygpt" not in shared:
                shared["anygpt"] = load_system("anygpt", pool, model=a.model, **options)
            return shared["anygpt"]
        return load_system(name, pool)

    t0 = time.time()
    summaries: dict[str, dict] = {}
    for row in ROWS:
        if a.tasks and row.task not in a.tasks or run_key(row) in summaries:
            continue
        if row.task == "chat":
            if a.chat is None:
                continue
            from anygpt.eval.chat_eval import run_chat

            path = a.out / f"{run_key(row)}.json"
            if not path.is_file():
                write_json(run_chat(a.chat, system_for("anygpt", []).model, limit=a.limit,
                                    progress=not a.no_progress), path)
            summaries[run_key(row)] = read_json(path, what="task report")["summary"]
            continue
        summaries[run_key(row)] = run_task(row, a, system_for, a.out)["summary"]
    table = build_table(summaries)
    print(format_table(table, ["task", "value", "target", "met"], title=f"anygpt eval report: {a.model}"))
    attributes = attribute_table(summaries)
    if attributes:
        print()
        print(format_table(attributes, ["task", *SCENE_ATTRIBUTES], title="scenes, per attribute (share right)"))
    curves = plot_learning_curves(a.curves, a.out / "learning-curves.png") if a.curves else None
    if curves is not None:
        print(f"\nlearning curves: {curves}")
    write_json({"model": a.model, "corpus": a.corpus, "limit": a.limit, "table": table, "attributes": attributes,
                "learning_curves": None if curves is None else str(curves), "summaries": summaries,
                "seconds": round(time.time() - t0, 1)}, a.out / "report.json")
    print(f"\nreport: {a.out / 'report.json'}; media and per-task reports under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
