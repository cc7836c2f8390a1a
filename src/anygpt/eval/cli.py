"""`anygpt eval TASK`: score a system (or a tokenizer) and print a table; write a JSON report.
`anygpt eval report --model M`: every task for one trained model, in one table (lm_report).

Items come from a corpus manifest (--manifest, --split) or from an external benchmark laid out
locally (--benchmark NAME --root DIR; layouts in docs/eval.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anygpt import cli_flags

DEFAULT_BENCHMARK = {
    "asr": "librispeech", "tts": "vctk", "voice-clone": "vctk", "caption": "coco", "text-to-image": "coco",
    "music-caption": "musiccaps", "text-to-music": "musiccaps", "reconstruction": None,
}
HELP = {
    "asr": ("speech -> text: WER/CER after normalisation, per speaker",
            "anygpt eval asr --manifest data/tiny/speech/manifest.jsonl --split test --system whisper\n"
            "  anygpt eval asr --benchmark librispeech --root ~/LibriSpeech --system mypkg.sut:load --limit 200"),
    "tts": ("text -> speech: Whisper WER/CER of the output",
            "anygpt eval tts --manifest data/tiny/speech/manifest.jsonl --split test --system reference"),
    "voice-clone": ("text + 3 s voice prompt -> speech: WER and speaker similarity to the prompt",
                    "anygpt eval voice-clone --manifest data/tiny/speech/manifest.jsonl --split heldout_speakers\n"
                    "  anygpt eval voice-clone --benchmark vctk --root ~/VCTK-Corpus-0.92 --system mypkg.sut:load"),
    "caption": ("image -> text: BLEU-4, METEOR, ROUGE-L, CIDEr (+ scene attribute accuracy)",
                "anygpt eval caption --manifest data/tiny/images/manifest.jsonl --split test --where kind=scene\n"
                "  anygpt eval caption --benchmark coco --root ~/coco --system mypkg.sut:load"),
    "text-to-image": ("caption -> image: scene checker accuracy (or CLIP score with --clip-model)",
                      "anygpt eval text-to-image --manifest data/tiny/images/manifest.jsonl --split test --where kind=scene"),
    "music-caption": ("music -> text: caption metrics, MiniLM similarity, attribute accuracy",
                      "anygpt eval music-caption --manifest data/tiny/music/manifest.jsonl --split test\n"
                      "  anygpt eval music-caption --benchmark musiccaps --root ~/musiccaps --no-meteor"),
    "text-to-music": ("caption -> music: tempo, key/mode, register read back from the audio",
                      "anygpt eval text-to-music --manifest data/tiny/music/manifest.jsonl --split test"),
    "reconstruction": ("media -> tokenizer codes -> media: log-mel, SI-SNR, WER, note F1, PSNR, SSIM",
                       "anygpt eval reconstruction --modality speech --tokenizer copy --manifest data/tiny/speech/manifest.jsonl\n"
                       "  anygpt eval reconstruction --modality image --tokenizer mypkg.tok:load --tokenizer-option ckpt=runs/vq"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli_flags.Parser(prog="anygpt eval", description=__doc__,
                              epilog=cli_flags.example_text("\n".join(
                                  [ex.split("\n")[0] for _, ex in HELP.values()]
                                  + ["anygpt eval report --model anygpt-tiny --corpus data/tiny --out runs/eval-anygpt-tiny"
                                     "   # every task, one table"])))
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True, parser_class=cli_flags.Parser)
    for task, (summary, example) in HELP.items():
        p = sub.add_parser(task, help=summary, description=summary,
                           epilog=cli_flags.example_text(example.replace("\n  ", "\n")))
        src = p.add_argument_group("items")
        cli_flags.add_manifest(src, "corpus manifest (.jsonl) built by `anygpt data build`")
        src.add_argument("--split", help="manifest split(s), comma-separated (e.g. test, heldout_speakers)")
        src.add_argument("--benchmark", choices=["librispeech", "vctk", "coco", "musiccaps"],
                         help=f"external benchmark (default for this task: {DEFAULT_BENCHMARK[task]})")
        src.add_argument("--root", type=Path, help="folder of the external benchmark (layouts: docs/eval.md)")
        src.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                         help="keep items whose manifest field or attribute KEY equals VALUE (e.g. kind=scene)")
        src.add_argument("--limit", type=cli_flags.positive_int, metavar="N",
                         help="score N items (N >= 1), evenly spaced over the list (default: all)")
        if task == "reconstruction":
            p.add_argument("--modality", required=True, choices=["speech", "music", "image"],
                           help="what the items are: speech, music or image")
            cli_flags.add_tokenizer(p, "copy", "copy (lossless, the instruments' ceiling) | a registered tokenizer "
                                               "name (compact, released) | package.module:factory")
            p.add_argument("--sample-rate", type=cli_flags.positive_int,
                           help="copy tokenizer: sample rate (default 16000 speech, 32000 music)")
            p.add_argument("--image-size", type=cli_flags.positive_int,
                           help="copy tokenizer: resize images to SIZE x SIZE (default: keep)")
        else:
            builtin = "reference (oracle: the ground truth)" + (" | whisper (the scorer's own ASR)" if task == "asr" else "")
            p.add_argument("--system", default="whisper" if task == "asr" else "reference",
                           help=f"{builtin} | anygpt (a trained model: --system-option model=NAME_OR_DIR) | "
                                f"package.module:factory (default: %(default)s)")
            p.add_argument("--system-option", action="append", default=[], metavar="KEY=VALUE",
                           help="keyword arguments for the system factory")
        if task == "voice-clone":
            p.add_argument("--prompt-seconds", type=float, default=3.0, help="voice prompt length (0: whole clip)")
        if task in ("caption", "music-caption"):
            p.add_argument("--no-meteor", action="store_true", help="skip METEOR (its Java start costs ~10 s)")
        if task == "text-to-image":
            p.add_argument("--clip-model", type=Path, help="local CLIP folder (transformers format) for a CLIP score")
        if task in ("music-caption", "text-to-music"):
            p.add_argument("--clap-model", type=Path, help="local CLAP folder (transformers format) for a CLAP score")
        cli_flags.add_out_file(p, "the JSON report (default: eval-TASK.json)")
        p.add_argument("--workdir", type=Path, metavar="DIR",
                       help="folder for the media the task generates (default: REPORT.media/ beside --out-file)")
        cli_flags.add_no_progress(p)
        cli_flags.add_threads(p)
    return parser


def _items(args):
    from anygpt.errors import UsageError
    from anygpt.eval.benchmarks import BenchmarkError, read_benchmark, read_eval_items

    if args.manifest and (args.benchmark or args.root):
        raise UsageError("pass either --manifest or --benchmark/--root, not both")
    if args.manifest:
        items, source = read_eval_items(args.manifest, args.split), f"{args.manifest}" + (f"[{args.split}]" if args.split else "")
    elif args.root:
        name = args.benchmark or DEFAULT_BENCHMARK[args.task]
        if name is None:
            raise UsageError("reconstruction on an external benchmark needs --benchmark NAME")
        items, source = read_benchmark(name, args.root), f"{name}:{args.root}"
    else:
        raise UsageError("no items: pass --manifest FILE.jsonl [--split S] or --benchmark NAME --root DIR")
    for key, value in cli_flags.key_values(args.where, "--where").items():
        items = [i for i in items if i.matches(key, value)]
        if not items:
            raise BenchmarkError(f"{source}: no item has {key}={value}")
    pool = list(items)
    if args.limit is not None and args.limit < len(items):  # evenly spaced, so every speaker/kind is sampled
        step = len(items) / args.limit
        items = [items[int(k * step)] for k in range(args.limit)]
    return items, pool, source


def main(argv: list[str] | None = None) -> int:
    from anygpt.eval.report import render_report, write_json
    from anygpt.eval.systems import load_system, load_tokenizer_for_eval
    from anygpt.eval.tasks import TASKS, TaskContext
    from anygpt.files import check_output_dir, check_output_file, safe_join

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:  # every task for one trained model: a command of its own options
        from anygpt.eval.lm_report import main as report_main

        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    out = check_output_file(args.out_file or Path(f"eval-{args.task}.json"))
    workdir = check_output_dir(args.workdir or out.with_name(out.name + ".media"), flag="--workdir")
    cli_flags.set_threads(args.threads)
    items, pool, source = _items(args)
    for it in items:  # generated files are named by item id: refuse ids that lead out of the work folder
        safe_join(workdir, it.id, what=f"{source}: item id")
    ctx = TaskContext(workdir=workdir, source=source, progress=not args.no_progress,
                      prompt_seconds=getattr(args, "prompt_seconds", 3.0), meteor=not getattr(args, "no_meteor", False),
                      extra={"pool": pool, "clip_model": getattr(args, "clip_model", None),
                             "clap_model": getattr(args, "clap_model", None)})
    if args.task == "reconstruction":
        ctx.modality = args.modality
        sr = args.sample_rate or (16000 if args.modality == "speech" else 32000)
        size = (args.image_size, args.image_size) if args.image_size else None
        target = load_tokenizer_for_eval(args.tokenizer, args.modality, sample_rate=sr, image_size=size,
                                         **cli_flags.key_values(args.tokenizer_option, "--tokenizer-option"))
        ctx.system_name = f"tokenizer:{args.tokenizer}"
    else:
        target = load_system(args.system, pool, **cli_flags.key_values(args.system_option, "--system-option"))
        ctx.system_name = args.system
    report = TASKS[args.task](items, target, ctx)
    print(render_report(report))
    write_json(report, out)
    print(f"\nreport: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
