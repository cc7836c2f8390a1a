"""The flag vocabulary of the `anygpt` sub-commands, defined once (docs/cli.md is its table).

Every sub-command builds its parser with `parser(...)` and adds the shared flags with the
`add_*` functions here, so the same thing has the same name, type, check and help text
everywhere. Old spellings are kept as hidden aliases for one release: they work, print a
one-line note on stderr, and do not show in --help.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from anygpt.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse with the house's error form: one line `PROG: PROBLEM (see PROG --help)`, exit 2,
    and help that keeps the examples' line breaks."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.checks: list[Callable[[argparse.ArgumentParser, argparse.Namespace], None]] = []

    def parse_known_args(self, args=None, namespace=None):
        """Parse, then run the checks the shared flags registered (e.g. --part < --parts)."""
        namespace, extras = super().parse_known_args(args, namespace)
        for check in self.checks:
            check(self, namespace)
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser(prog: str, description: str, example: str) -> Parser:
    """A sub-command's parser; `example` (one or more command lines) ends its --help."""
    return Parser(prog=prog, description=description, epilog=example_text(example))


def example_text(example: str) -> str:
    lines = example.strip("\n").splitlines()
    head = "example:" if sum(1 for line in lines if line.strip().startswith("anygpt ")) == 1 else "examples:"
    return head + "\n" + "\n".join(("  " + line) if line.strip() else "" for line in lines)


# ---------------------------------------------------------------- value types
def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _int_at_least(text, 1)


def count_or_zero(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be {low} or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; it must be a number above 0")
    return value


def key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """['k=v', ...] -> {'k': 'v'}; UsageError naming the flag for an item without '='."""
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {p!r}: expected KEY=VALUE (e.g. path=models/x)")
        out[key] = value
    return out


# ---------------------------------------------------------------- old spellings
class _OldSpelling(argparse.Action):
    """A hidden alias: stores like `new` does and notes the new spelling on stderr."""

    def __init__(self, option_strings, dest, new: str, append: bool = False, **kwargs) -> None:
        self.new, self.append = new, append
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is the old spelling of {self.new}; it goes in the next release",
              file=sys.stderr)
        if self.append:
            items = list(getattr(namespace, self.dest, None) or [])
            items.append(values)
            values = items
        elif self.nargs == 0:
            values = self.const
        setattr(namespace, self.dest, values)


def old_spelling(p: argparse.ArgumentParser, old: str, new: str, dest: str, *, flag: bool = False,
                 append: bool = False, type: Callable[[str], Any] | None = None) -> None:
    """Accept `old` as a hidden alias of `new` (same dest)."""
    kw: dict[str, Any] = {"nargs": 0, "const": True} if flag else {"type": type}
    p.add_argument(old, dest=dest, action=_OldSpelling, new=new, append=append, help=argparse.SUPPRESS,
                   default=argparse.SUPPRESS, **kw)


# ---------------------------------------------------------------- the shared flags
def add_out(p: argparse.ArgumentParser, help: str = "output folder (created; rerun with the same --out to resume)",
            *, required: bool = True, default: Path | None = None, old: tuple[str, ...] = ()) -> None:
    """--out DIR: an output folder."""
    p.add_argument("--out", type=Path, required=required, default=default, metavar="DIR", help=help)
    for o in old:
        old_spelling(p, o, "--out", "out", type=Path)


def add_out_file(p: argparse.ArgumentParser, help: str, *, required: bool = False, default: Path | None = None,
                 old: tuple[str, ...] = ()) -> None:
    """--out-file FILE: one output file (a report, a scripts file)."""
    p.add_argument("--out-file", type=Path, required=required and not old, default=default, metavar="FILE", help=help)
    for o in old:
        old_spelling(p, o, "--out-file", "out_file", type=Path)


def add_corpus(p: argparse.ArgumentParser, help: str, *, required: bool = False, default: Path | None = None) -> None:
    """--corpus DIR: a corpus root (data/tiny) or one modality's folder (data/tiny/images)."""
    p.add_argument("--corpus", type=Path, required=required, default=default, metavar="DIR", help=help)


def add_manifest(p: argparse.ArgumentParser, help: str = "one JSONL manifest (built by `anygpt data build`)") -> None:
    p.add_argument("--manifest", type=Path, metavar="FILE", help=help)


def add_model(p: argparse.ArgumentParser, default: str, help: str | None = None) -> None:
    p.add_argument("--model", default=default, metavar="NAME_OR_DIR",
                   help=help or f"anygpt-tiny, random-64x2 (random weights), or a model folder (default: {default})")


def add_tokenizer(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """--tokenizer NAME and --tokenizer-option KEY=VALUE (old: --tokenizer-arg)."""
    p.add_argument("--tokenizer", default=default, metavar="NAME", help=help)
    p.add_argument("--tokenizer-option", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the tokenizer loader, repeatable (e.g. path=models/speechtokenizer)")
    old_spelling(p, "--tokenizer-arg", "--tokenizer-option", "tokenizer_option", append=True)


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """--no-progress (old: --quiet)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    old_spelling(p, "--quiet", "--no-progress", "no_progress", flag=True)


def add_workers(p: argparse.ArgumentParser, help: str = "worker processes (default: the number of cores; 0: all "
                                                        "work in this process)") -> None:
    p.add_argument("--workers", type=count_or_zero, default=None, metavar="N", help=help)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads (default: the number of cores; use 1 when jobs share the CPU)")


def add_seed(p: argparse.ArgumentParser, help: str = "random seed (default: 0); same seed, same bytes") -> None:
    p.add_argument("--seed", type=int, default=0, metavar="N", help=help)


def add_parts(p: Parser, what: str = "the items") -> None:
    """--part I --parts N: one part of a job split over machines (0 <= I < N, checked on parsing)."""
    p.add_argument("--part", type=count_or_zero, default=0, metavar="I",
                   help="this machine's part, 0..N-1 (default: 0)")
    p.add_argument("--parts", type=positive_int, default=1, metavar="N",
                   help=f"split {what} into N parts (item n goes to part n %% N); each part writes its own --out")
    p.checks.append(check_parts)


def check_parts(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.part >= args.parts:
        p.error(f"argument --part: {args.part} is not a part of --parts {args.parts} (0..{args.parts - 1})")


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_or_cores(workers: int | None) -> int:
    return cores() if workers is None else workers


def set_threads(threads: int | None) -> None:
    """Apply --threads to torch in this process (imported only when a command uses it)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
