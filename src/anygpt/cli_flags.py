"""The flag vocabulary of the `anygpt` sub-commands, defined once (docs/cli.md is its table).

Every sub-command builds its parser with `parser(...)` and adds the shared flags with the
`add_*` functions here, so the same thing has the same name, type, check and help text
everywhere; numbers are range-checked by `Number` (also used for config values).
"""

from __future__ import annotations

import argparse
import math
import os
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
class Number:
    """A range-checked number, the one check for flags and config values alike.

    As an argparse `type` it parses a flag's text; `.check(value, what)` checks a value read
    from JSON (a bool, a string or a list is not a number there). NaN and infinity are always
    refused; `low`/`high` are inclusive bounds, `above`/`below` exclusive ones.

        p.add_argument("--lr", type=Number(float, above=0))
        block_len = BLOCK_LEN.check(d.get("block_len"), f"{path}: block_len")
    """

    def __init__(self, kind: type = int, *, low: float | None = None, high: float | None = None,
                 above: float | None = None, below: float | None = None) -> None:
        self.kind, self.low, self.high, self.above, self.below = kind, low, high, above, below
        self.__name__ = self.describe()  # argparse names a type by it

    def describe(self) -> str:
        noun = "a whole number" if self.kind is int else "a number"
        bounds = " and ".join(f"{sign} {_shown(bound)}" for sign, bound in
                              ((">=", self.low), (">", self.above), ("<=", self.high), ("<", self.below))
                              if bound is not None)
        return f"{noun} {bounds}" if bounds else noun

    def __call__(self, text: str):
        """argparse: the flag's text -> the number (ArgumentTypeError saying what is allowed)."""
        try:
            value = self.kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        problem = self._problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} is not allowed; it must be {problem}")
        return value

    def check(self, value: Any, what: str):
        """A JSON value -> the number; ValueError '`what`: PROBLEM' otherwise (an int is accepted
        where a float is expected; a float with a fraction is not an int)."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and self.kind is int and isinstance(value, float):
            ok = value.is_integer() and math.isfinite(value)
            value = int(value) if ok else value
        if not ok:
            raise ValueError(f"{what}: {value!r} is not {self.describe()}")
        value = self.kind(value)
        problem = self._problem(value)
        if problem:
            raise ValueError(f"{what}: {value!r} is not allowed; it must be {problem}")
        return value

    def _problem(self, value) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.describe()} (not NaN or infinite)"
        if ((self.low is not None and value < self.low) or (self.high is not None and value > self.high)
                or (self.above is not None and value <= self.above) or (self.below is not None and value >= self.below)):
            return self.describe()
        return None


def _shown(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


positive_int = Number(int, low=1)
count_or_zero = Number(int, low=0)
positive_float = Number(float, above=0)
non_negative_float = Number(float, low=0)
fraction = Number(float, low=0, high=1)
SEED_MAX = 2**63 - 1  # torch, numpy and Python all take a seed of this size
seed_int = Number(int, low=0, high=SEED_MAX)
port_int = Number(int, low=1, high=65535)


def key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """['k=v', ...] -> {'k': 'v'}; UsageError naming the flag for an item without '='."""
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {p!r}: expected KEY=VALUE (e.g. path=models/x)")
        out[key] = value
    return out


# ---------------------------------------------------------------- the shared flags
def add_out(p: argparse.ArgumentParser, help: str = "output folder (created; rerun with the same --out to resume)",
            *, required: bool = True, default: Path | None = None) -> None:
    """--out DIR: an output folder."""
    p.add_argument("--out", type=Path, required=required, default=default, metavar="DIR", help=help)


def add_out_file(p: argparse.ArgumentParser, help: str, *, required: bool = False, default: Path | None = None) -> None:
    """--out-file FILE: one output file (a report, a scripts file)."""
    p.add_argument("--out-file", type=Path, required=required, default=default, metavar="FILE", help=help)


def add_corpus(p: argparse.ArgumentParser, help: str, *, required: bool = False, default: Path | None = None) -> None:
    """--corpus DIR: a corpus root (data/tiny) or one modality's folder (data/tiny/images)."""
    p.add_argument("--corpus", type=Path, required=required, default=default, metavar="DIR", help=help)


def add_manifest(p: argparse.ArgumentParser, help: str = "one JSONL manifest (built by `anygpt data build`)") -> None:
    p.add_argument("--manifest", type=Path, metavar="FILE", help=help)


def add_model(p: argparse.ArgumentParser, default: str, help: str | None = None) -> None:
    p.add_argument("--model", default=default, metavar="NAME_OR_DIR",
                   help=help or f"anygpt-tiny, random-64x2 (random weights), or a model folder (default: {default})")


def add_tokenizer(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """--tokenizer NAME and --tokenizer-option KEY=VALUE."""
    p.add_argument("--tokenizer", default=default, metavar="NAME", help=help)
    p.add_argument("--tokenizer-option", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the tokenizer loader, repeatable (e.g. path=models/speechtokenizer)")


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """--no-progress: no progress bars."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_workers(p: argparse.ArgumentParser, help: str = "worker processes (default: the number of cores; 0: all "
                                                        "work in this process)") -> None:
    p.add_argument("--workers", type=count_or_zero, default=None, metavar="N", help=help)


DEFAULT_THREADS = 1  # one default for every command: the decoding engine's, and safe on a shared CPU


def add_threads(p: argparse.ArgumentParser) -> None:
    """--threads N: torch threads of this process (every command: default 1)."""
    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
                   help=f"torch threads (default: {DEFAULT_THREADS}; more can be faster on a machine of your own)")


def add_engine(p: argparse.ArgumentParser, backends: tuple[str, ...], *, with_hf: bool) -> None:
    """--engine NAME (one of `backends`: anygpt.lm.backends.BACKENDS, which the caller passes,
    since this module sits below anygpt.lm; with_hf: also HF generate) and --int8."""
    p.add_argument("--engine", choices=[*backends, *(["hf"] if with_hf else [])], default="engine",
                   help="decoder: anygpt's generation engine (default); native (its int8 forward in C++, "
                        "built on first use with g++: the fastest); ONNX Runtime (pip install 'anygpt[onnx]'); "
                        "llama.cpp (pip install 'anygpt[llamacpp]'); auto (the fastest installed)"
                        + ("; or HF generate (the reference; beam search)" if with_hf else ""))
    p.add_argument("--int8", action="store_true",
                   help="int8 weights (engine, onnx; always in native; q8_0 in llamacpp): faster, slightly different tokens")


def add_seed(p: argparse.ArgumentParser, help: str = "random seed (default: 0); same seed, same bytes") -> None:
    p.add_argument("--seed", type=seed_int, default=0, metavar="N", help=help)


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
