"""What the four tokenizer trainers share beyond `anygpt.train.core`: the `--corpus` flag, the
command line recorded in an export, and the train-or-export flow of `main`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Callable

from anygpt.errors import AnyGPTError
from anygpt import cli_flags
from anygpt.files import claim_output_dir
from anygpt.train.core import RunOptions, TrainingRun


class CorpusError(AnyGPTError, ValueError):
    """A training corpus that is missing, empty or malformed."""


def add_corpus_arg(p: argparse.ArgumentParser, what: str, default: str | None = "data/tiny") -> None:
    """--corpus DIR (cli_flags.add_corpus)."""
    shown = f" (default: {default})" if default else ""
    cli_flags.add_corpus(p, f"corpus root with {what}, written by `anygpt data build`{shown}",
                         required=default is None, default=Path(default) if default else None)


def command_line(trainer: str, argv: list[str] | None) -> str:
    """The command as typed, for the export's record of how it was trained."""
    return f"anygpt train {trainer} " + shlex.join(sys.argv[1:] if argv is None else argv)


def train_or_export(run: TrainingRun, options: RunOptions, train: Callable[[], None],
                    export: Callable[[Path], object]) -> None:
    """Resume and train (`train` runs the loop over run.steps()), or with --export-only load the
    newest checkpoint; then, with --export DIR, export there."""
    if options.export_only and options.export is None:
        raise AnyGPTError("--export-only needs --export DIR")
    if options.export is not None:  # before an hour of training, not after it
        claim_output_dir(options.export, "model", flag="--export",
                         inputs={"the run's checkpoints (--out)": options.out / "checkpoints"})
    if options.export_only:
        run.resume_for_export()
    else:
        run.resume()
        train()
    if options.export is not None:
        export(options.export)
        print(f"exported {options.export}", flush=True)
