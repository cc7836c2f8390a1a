"""The one training core every trainer runs on (the LM and the four tokenizer models).

It owns what is the same in every recipe: the flags (`add_run_args`), resuming from the newest
checkpoint, the learning-rate schedule, the step loop with a progress bar (loss, tokens/s, ETA),
`--max-minutes`, checkpoints every N steps and/or minutes (safetensors + JSON, atomic, the
newest K kept: `anygpt.train.checkpoint`), OUT/log.jsonl and TensorBoard event files, and a
clean stop on SIGTERM or Ctrl-C. A recipe builds its modules, optimizer and batches and
calls, per step:

    run = TrainingRun(options, modules={"model": m}, optimizer=opt, config={...}, lr=schedule)
    data_state = run.resume()                  # None on a fresh run
    for step in run.steps():
        loss = ...                              # batches must depend only on (seed, step)
        run.optimise(loss)                      # or the recipe's own backward + run.step_optimizer()
        run.record(loss=loss.item(), tokens=n)

Rerunning the same command continues from the newest checkpoint; a run folder written with
another configuration is refused with the keys that differ.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from anygpt.errors import CheckpointError, ManifestError
from anygpt.files import append_jsonl, write_json
from anygpt.manifest import read_json
from anygpt.train.checkpoint import CheckpointFolder, check_optimizer_shapes

RUN_CONFIG = "run.json"
LOG = "log.jsonl"
GENERATORS = "generators"  # the checkpoint entry holding the modules' own torch.Generator states


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine down to floor * peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


@dataclass
class RunOptions:
    """What every trainer's command line sets the same way (see add_run_args)."""

    out: Path
    steps: int
    max_minutes: float | None = None
    save_every: int = 200
    save_every_minutes: float | None = None
    keep: int = 3
    log_every: int = 10
    progress: bool = True
    seed: int = 0
    threads: int | None = None
    export: Path | None = None
    export_only: bool = False

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "RunOptions":
        return cls(out=Path(a.out), steps=a.steps, max_minutes=a.max_minutes or None, save_every=a.save_every,
                   save_every_minutes=a.save_every_minutes, keep=a.keep, log_every=a.log_every,
                   progress=not a.no_progress, seed=a.seed, threads=a.threads,
                   export=Path(a.export) if a.export else None, export_only=a.export_only)


def add_run_args(p: argparse.ArgumentParser, *, out: str, steps: int, save_every: int = 200,
                 log_every: int = 10, export_help: str = "after training, export the weights to this folder") -> None:
    """The flags every trainer shares (docs/cli.md), each range-checked on parsing (cli_flags)."""
    from anygpt import cli_flags

    g = p.add_argument_group("run (the same for every trainer)")
    g.add_argument("--out", default=out, help=f"run folder: checkpoints, log.jsonl, TensorBoard events; "
                                              f"rerun with the same folder to resume (default: {out})")
    g.add_argument("--steps", type=cli_flags.positive_int, default=steps,
                   help=f"total optimiser steps, the schedule's length (default: {steps})")
    g.add_argument("--max-minutes", type=cli_flags.positive_float, default=None, dest="max_minutes",
                   help="stop cleanly (and save) after this many minutes of this invocation")
    g.add_argument("--save-every", type=cli_flags.positive_int, default=save_every,
                   help=f"checkpoint every N steps (default: {save_every})")
    g.add_argument("--save-every-minutes", type=cli_flags.positive_float, default=None,
                   help="also checkpoint every M minutes")
    g.add_argument("--keep", type=cli_flags.positive_int, default=3, help="checkpoints kept (newest first; default: 3)")
    g.add_argument("--log-every", type=cli_flags.positive_int, default=log_every,
                   help=f"log every N steps (default: {log_every})")
    cli_flags.add_no_progress(g)
    cli_flags.add_seed(g, "random seed: same seed, same run (default: 0)")
    cli_flags.add_threads(g)
    g.add_argument("--export", default=None, metavar="DIR",
                   help=export_help + " (a new or empty folder, or one this command exported before)")
    g.add_argument("--export-only", action="store_true", help="export the newest checkpoint of --out and exit")


def export_inputs(a: argparse.Namespace, **more) -> dict:
    """The places an --export must stay apart from: the run's checkpoints and the given inputs."""
    return {"the run's checkpoints (--out)": Path(a.out) / "checkpoints", **more}


def module_generators(modules: dict[str, nn.Module]) -> dict[str, torch.Generator]:
    """Every torch.Generator that a submodule holds as an attribute (the quantizers draw their
    codebook restarts from their own), by path, so that a resumed run continues their streams."""
    found = {}
    for name, module in modules.items():
        for path, sub in module.named_modules():
            for attr, value in vars(sub).items():
                if isinstance(value, torch.Generator):
                    found[".".join(p for p in (name, path, attr) if p)] = value
    return found


class TrainingRun:
    """The step loop of one run folder (see the module docstring).

    modules: name -> module, each saved as <name>.safetensors. optimizer: saved flattened.
    config: what defines the run (recorded in OUT/run.json; a resume with different values is
    refused). lr: step -> learning rate, applied to every param group (None: left alone).
    get_state / set_state replace the plain state_dict calls (e.g. to gather sharded weights);
    is_main: only the main process writes; barrier: called after a save (multi-process runs).
    """

    def __init__(self, options: RunOptions, *, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer | None,
                 config: dict, lr: Callable[[int], float] | None = None, desc: str = "train", is_main: bool = True,
                 get_state: Callable[[], tuple[dict, dict | None]] | None = None,
                 set_state: Callable[[dict, dict | None], None] | None = None,
                 barrier: Callable[[], None] | None = None):
        self.o, self.modules, self.optimizer, self.config = options, modules, optimizer, config
        self.lr, self.desc, self.is_main = lr, desc, is_main
        self._get_state = get_state or self._plain_state
        self._set_state = set_state or self._plain_load
        self._barrier = barrier or (lambda: None)
        self.out = Path(options.out)
        self.ckpts = CheckpointFolder(self.out, keep=options.keep)
        self.step, self.elapsed0, self.t0 = 0, 0.0, time.time()
        self.data_state: dict = {}
        self._stop = False
        self.timed_out = False  # stopped by --max-minutes
        self._rate_t, self._rate_tokens = time.time(), 0
        self._log = self._tb = self._bar = None

    # ----------------------------------------------------------------- state
    def _plain_state(self) -> tuple[dict, dict | None]:
        return ({n: m.state_dict() for n, m in self.modules.items()},
                self.optimizer.state_dict() if self.optimizer is not None else None)

    def _plain_load(self, modules: dict, opt: dict | None) -> None:
        for name, m in self.modules.items():
            if name not in modules:
                raise CheckpointError(f"{self.out}: the checkpoint has no weights for {name!r}")
            try:
                m.load_state_dict(modules[name])
            except RuntimeError as e:
                raise CheckpointError(f"{self.out}: the checkpoint's {name!r} weights do not fit this model "
                                      f"({str(e).splitlines()[0][:200]})") from None
        if opt is not None and self.optimizer is not None:
            try:
                self.optimizer.load_state_dict(opt)
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise CheckpointError(f"{self.out}: the checkpoint's optimizer state does not fit this model "
                                      f"({type(e).__name__}: {str(e)[:200]})") from None

    @property
    def elapsed(self) -> float:
        """Training wall time in seconds, over all resumed runs."""
        return self.elapsed0 + time.time() - self.t0

    def check_config(self) -> None:
        """Refuse a run folder written with another configuration; record ours in a new one. A
        folder is bound to its configuration by its first checkpoint: before that (a start that
        failed on a mistyped option) ours replaces the recorded one."""
        path = self.out / RUN_CONFIG
        config = json.loads(json.dumps(self.config))  # as it reads back (tuples -> lists)
        if path.is_file() and self.ckpts.latest() is not None:
            try:
                old = read_json(path, what="run config")
            except ManifestError as e:
                raise CheckpointError(str(e)) from None
            if not isinstance(old, dict):
                raise CheckpointError(f"{path}: not a JSON object; it records the run's configuration")
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if diff:
                shown = "; ".join(f"{k}: {old.get(k)!r} there, {config.get(k)!r} now" for k in diff[:4])
                raise CheckpointError(f"{self.out}: this run folder was written with another configuration ({shown}); "
                                      "use a new --out, or the same options as before")
        elif self.is_main:
            write_json(path, config)

    def resume(self) -> dict | None:
        """Load the newest checkpoint of OUT if there is one; -> the recipe's data state or None."""
        self.check_config()
        latest = self.ckpts.latest()
        if latest is None:
            return None
        modules, opt, state = CheckpointFolder.load(latest)
        self._set_state(modules, opt)
        if self.optimizer is not None:
            check_optimizer_shapes(getattr(self.optimizer, "optimizer", self.optimizer), latest)
        saved = modules.get(GENERATORS, {})
        for path, gen in module_generators(self.modules).items():
            if path in saved:
                gen.set_state(saved[path])
        self.step, self.elapsed0 = int(state["step"]), float(state.get("elapsed", 0.0))
        self.data_state = state.get("data", {})
        if self.is_main:
            print(f"resumed {latest} at step {self.step}", flush=True)
        return self.data_state

    def resume_for_export(self) -> None:
        """--export-only: load the newest checkpoint; without one, fail and leave OUT as it is."""
        if self.ckpts.latest() is None:
            raise CheckpointError(f"{self.out}: no checkpoint to export; train first (the same command "
                                  "without --export-only)")
        self.resume()

    def save(self) -> None:
        modules, opt = self._get_state()
        generators = module_generators(self.modules)
        if generators:
            modules = {**modules, GENERATORS: {k: g.get_state() for k, g in generators.items()}}
        if self.is_main:
            self.ckpts.save(self.step, modules, opt, {"step": self.step, "elapsed": self.elapsed,
                                                      "data": self.data_state, "config": self.config})
        self._barrier()
        self._last_save = time.time()

    # ----------------------------------------------------------------- loop
    def _open_logs(self) -> None:
        """log.jsonl, TensorBoard and the progress bar; the logs reopen on demand after close."""
        if not self.is_main:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=self.o.steps, initial=self.step, desc=self.desc, disable=not self.o.progress,
                         mininterval=2, dynamic_ncols=True)

    def _ensure_logs(self) -> None:
        if self._log is not None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._log = self.out / LOG  # appended line by line (files.append_jsonl: a cut line stays alone)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tensorboard"))
        except ImportError:  # tensorboard is optional: log.jsonl has the same numbers
            self._tb = None

    def _close_logs(self) -> None:
        for h in (self._bar, self._tb):
            if h is not None:
                h.close()
        self._log = self._tb = self._bar = None

    def _on_signal(self, signum, frame) -> None:
        self._stop = True
        if self.is_main:
            print(f"\n{signal.Signals(signum).name}: stopping after this step and saving", flush=True)

    def steps(self) -> Iterator[int]:
        """Yield the step numbers still to run; save on the schedule and at the end."""
        if self.step >= self.o.steps:
            return
        self._open_logs()
        self.t0 = self._last_save = self._rate_t = time.time()
        self._rate_tokens = 0
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        for m in self.modules.values():
            m.train()
        first = self.step
        try:
            while self.step < self.o.steps and not self._stop:
                # every run makes at least one step, so a tiny --max-minutes still makes progress
                if self.o.max_minutes and self.step > first and time.time() - self.t0 > self.o.max_minutes * 60:
                    if self.is_main:
                        print(f"\nstopping at --max-minutes {self.o.max_minutes}", flush=True)
                    self.timed_out = True
                    break
                if self.lr is not None and self.optimizer is not None:
                    for g in self.optimizer.param_groups:
                        g["lr"] = self.lr(self.step)
                yield self.step
                self.step += 1
                if self._bar is not None:
                    self._bar.update(1)
                due = self.step % self.o.save_every == 0 or (
                    self.o.save_every_minutes and time.time() - self._last_save > self.o.save_every_minutes * 60)
                if due and self.step < self.o.steps:
                    self.save()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        self.save()
        self._close_logs()
        if self.is_main:
            print(f"{self.desc}: step {self.step} of {self.o.steps}; this run {time.time() - self.t0:.0f} s, "
                  f"all runs {self.elapsed:.0f} s; checkpoint in {self.ckpts.latest()}", flush=True)

    @property
    def ended(self) -> bool:
        """The run is over: all steps done, or --max-minutes reached (not a signal: it resumes)."""
        return self.finished or self.timed_out

    @property
    def finished(self) -> bool:
        return self.step >= self.o.steps

    def step_optimizer(self, params, clip: float | None = 1.0) -> float:
        """Clip the gradient norm, step, zero the gradients; -> the norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if clip else torch.zeros(())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def optimise(self, loss: torch.Tensor, clip: float | None = 1.0) -> float:
        """backward + clip + step for single-process recipes; -> gradient norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return self.step_optimizer([p for m in self.modules.values() for p in m.parameters()], clip)

    def logs_now(self) -> bool:
        """Whether `record` writes the current step (every log_every steps, and the first)."""
        done = self.step + 1
        return self.is_main and (done % self.o.log_every == 0 or done == 1)

    def record(self, tokens: int = 0, **terms: float | list) -> None:
        """Log the current step's terms (see logs_now); tokens: tokens this step processed, for
        the tokens/s figure."""
        self._rate_tokens += tokens
        done = self.step + 1
        if not self.logs_now():
            return
        now = time.time()
        rate = self._rate_tokens / max(now - self._rate_t, 1e-9)
        self._rate_t, self._rate_tokens = now, 0
        row = {"step": done, **terms, "t": round(self.elapsed, 1)}
        if tokens:
            row["tokens_per_s"] = round(rate, 1)
        if self.optimizer is not None:
            row.setdefault("lr", self.optimizer.param_groups[0]["lr"])
        self._write(row)
        if self._bar is not None:
            shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()
                     if k not in ("step", "t") and isinstance(v, (int, float))}
            self._bar.set_postfix(shown, refresh=False)

    def log_eval(self, step: int | None = None, **terms: float) -> None:
        """Validation figures after `step` completed steps (default: all so far), as log.jsonl
        rows with "eval": true. Its time does not count in the next tokens/s figure."""
        step = self.step if step is None else step
        if self.is_main:
            self._write({"step": step, "eval": True, **terms, "t": round(self.elapsed, 1)})
            print(f"\n[{self.desc} step {step}] " + "  ".join(f"{k} {v:.4f}" for k, v in terms.items()),
                  flush=True)
            if self._bar is None:  # an evaluation outside steps(): nothing more follows soon
                self._close_logs()
        self._rate_t, self._rate_tokens = time.time(), 0

    def _write(self, row: dict) -> None:
        self._ensure_logs()
        append_jsonl(self._log, row)
        if self._tb is not None:
            prefix = "eval/" if row.get("eval") else "train/"
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "t"):
                    self._tb.add_scalar(prefix + k, v, row["step"])
