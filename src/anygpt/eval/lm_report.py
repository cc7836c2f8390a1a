"""`anygpt eval report`: one trained model on the paper's tasks, on held-out data, in one table.

    anygpt eval report --model anygpt-tiny --corpus data/tiny --chat data/tiny-seq/chat-test \\
        --out runs/eval-anygpt-tiny --limit 40

The analogue of the paper's Tables 2-6 on our corpora: captioning and text-to-image on test
scenes and on scenes of held-out (shape, colour) combinations, ASR on held-out sentences
(against Whisper tiny.en on the same clips), TTS on held-out sentences (against the WER of the
source clips), voice cloning from 3 s prompts of held-out speakers, music captioning and
text-to-music on held-out pieces, and, with --chat, how often a held-out conversation's
assistant turn is answered in the modality it asks for. Every task's JSON report and generated
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
    Row("chat, held-out conversations: requested modality", "chat", "", "", "modality_rate", 0.95),
    Row("chat: media segments well-formed", "chat", "", "", "well_formed", 1.0),
)
MUSIC_ATTRIBUTES = ("mode", "tempo_octave", "register")  # key or mode, tempo, register


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
    cli_flags.add_threads(p)
    cli_flags.add_no_progress(p)
    a = p.parse_args(argv)
    from anygpt.eval.report import format_table, write_json
    from anygpt.eval.systems import load_system

    cli_flags.set_threads(a.threads)
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
    write_json({"model": a.model, "corpus": a.corpus, "limit": a.limit, "table": table, "summaries": summaries,
                "seconds": round(time.time() - t0, 1)}, a.out / "report.json")
    print(f"\nreport: {a.out / 'report.json'}; media and per-task reports under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
