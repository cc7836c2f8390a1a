"""`anygpt data build` and `anygpt data stats`: build the offline corpora, print their statistics."""

from __future__ import annotations

import argparse
import logging
import sys

BUILD_EXAMPLE = """example:
  anygpt data build --preset micro --out data/micro          # seconds (tests)
  anygpt data build --preset tiny --out data/tiny            # minutes on 2 cores
  anygpt data build --preset tiny --out data/tiny --only speech music
A killed build resumes where it stopped when run again with the same arguments."""
STATS_EXAMPLE = """example:
  anygpt data stats data/tiny
  anygpt data stats data/tiny --json"""


def _parser() -> argparse.ArgumentParser:
    from anygpt.data.corpora.build import CORPORA
    from anygpt.data.corpora.presets import PRESETS

    p = argparse.ArgumentParser(prog="anygpt data", description="Build and inspect the offline corpora.",
                                epilog=BUILD_EXAMPLE + "\n" + STATS_EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="{build,stats}")
    b = sub.add_parser("build", help="build (or resume) the corpora of a preset",
                       description="Build speech, music, image and text corpora from packaged assets, "
                                   "with manifests and honest splits; resumable and deterministic for a seed.",
                       epilog=BUILD_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--preset", choices=list(PRESETS), default="tiny", help="size preset (default: tiny)")
    b.add_argument("--out", required=True, help="output folder (created; reuse it to resume)")
    b.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    b.add_argument("--only", nargs="+", choices=list(CORPORA), default=list(CORPORA), help="corpora to build")
    b.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    s = sub.add_parser("stats", help="counts, hours and sizes per split and modality",
                       description="Print counts, hours and sizes per split and modality of a built folder, "
                                   "and the items skipped during the build.",
                       epilog=STATS_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("dir", help="a folder made by `anygpt data build`")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from anygpt.data.corpora.common import MissingDependencyError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "build":
        from anygpt.data.corpora.build import build_corpora
        from anygpt.data.corpora.stats import corpus_stats, format_stats

        try:
            build_corpora(args.preset, args.out, seed=args.seed, corpora=tuple(args.only),
                          workers=args.workers, progress=not args.no_progress)
        except MissingDependencyError as e:
            print(f"anygpt data build: {e}", file=sys.stderr)
            return 2
        except ValueError as e:
            print(f"anygpt data build: {e}", file=sys.stderr)
            return 2
        print(format_stats(corpus_stats(args.out)))
        return 0
    import json
    from pathlib import Path

    from anygpt.data.corpora.stats import corpus_stats, format_stats

    if not (Path(args.dir) / "index.json").exists() and not any(Path(args.dir).glob("*/manifest.jsonl")):
        print(f"anygpt data stats: {args.dir} holds no corpus (no index.json or */manifest.jsonl); "
              f"build one with `anygpt data build --preset micro --out {args.dir}`", file=sys.stderr)
        return 2
    stats = corpus_stats(args.dir)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
