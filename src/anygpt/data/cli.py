"""`anygpt data build` and `anygpt data stats`: build the offline corpora, print their statistics."""

from __future__ import annotations

import argparse
import logging
import sys

from anygpt import cli_flags

BUILD_EXAMPLE = """anygpt data build --preset micro --out data/micro          # seconds (tests)
anygpt data build --preset tiny --out data/tiny            # minutes on 2 cores
anygpt data build --preset tiny --out data/tiny --only speech music

A killed build resumes where it stopped when run again with the same arguments."""
STATS_EXAMPLE = """anygpt data stats --corpus data/tiny
anygpt data stats --corpus data/tiny --json"""


def build_parser() -> argparse.ArgumentParser:
    from anygpt.data.corpora.build import CORPORA
    from anygpt.data.corpora.presets import CORPUS_PRESETS

    p = cli_flags.parser("anygpt data", "Build and inspect the offline corpora.", BUILD_EXAMPLE + "\n" + STATS_EXAMPLE)
    sub = p.add_subparsers(dest="action", required=True, metavar="{build,stats}", parser_class=cli_flags.Parser)
    b = sub.add_parser("build", help="build (or resume) the corpora of a preset",
                       description="Build speech, music, image and text corpora from packaged assets, "
                                   "with manifests and honest splits; resumable and deterministic for a seed.",
                       epilog=cli_flags.example_text(BUILD_EXAMPLE))
    b.add_argument("--preset", choices=list(CORPUS_PRESETS), default="tiny", help="size preset (default: tiny)")
    cli_flags.add_out(b, "output folder (created; rerun with the same --out to resume)")
    cli_flags.add_seed(b)
    b.add_argument("--only", nargs="+", choices=list(CORPORA), default=list(CORPORA), help="corpora to build")
    cli_flags.add_workers(b, "processes for synthesis and rendering (default: the number of cores)")
    cli_flags.add_no_progress(b)
    s = sub.add_parser("stats", help="counts, hours and sizes per split and modality",
                       description="Print counts, hours and sizes per split and modality of a built folder, "
                                   "and the items skipped during the build.",
                       epilog=cli_flags.example_text(STATS_EXAMPLE))
    cli_flags.add_corpus(s, "a corpus root made by `anygpt data build` (e.g. data/tiny)")
    s.add_argument("dir", nargs="?", default=None, help=argparse.SUPPRESS)  # the old spelling: a bare folder
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "build":
        from anygpt.data.corpora.build import build_corpora
        from anygpt.data.corpora.stats import corpus_stats, format_stats
        from anygpt.files import check_output_dir

        check_output_dir(args.out)
        build_corpora(args.preset, args.out, seed=args.seed, corpora=tuple(args.only),
                      workers=args.workers, progress=not args.no_progress)
        print(format_stats(corpus_stats(args.out)))
        return 0
    import json
    from pathlib import Path

    from anygpt.data.corpora.stats import corpus_stats, format_stats
    from anygpt.errors import ManifestError

    folder = args.corpus or (Path(args.dir) if args.dir else None)
    if folder is None:
        p.error("the following arguments are required: --corpus")
    if not (folder / "index.json").exists() and not any(folder.glob("*/manifest.jsonl")):
        raise ManifestError(f"{folder}: holds no corpus (no index.json or */manifest.jsonl); "
                            f"build one with `anygpt data build --preset micro --out {folder}`")
    stats = corpus_stats(folder)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
