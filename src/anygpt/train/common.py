"""Bookkeeping shared by the trainers: resuming from OUT/last.pt, the warmup + cosine learning
rate, a wall-time budget, a progress bar, OUT/log.jsonl, and atomic saves."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Iterator

import torch
from torch import nn


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine down to floor * peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def load_checkpoint(out: Path) -> dict | None:
    """OUT/last.pt written by TrainingRun (our own file, hence weights_only=False), or None."""
    path = Path(out) / "last.pt"
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


class TrainingRun:
    """modules: name -> module saved under that name; `extra` is saved beside them (configs).
    Iterate `steps()` for the step numbers still to run; per step call `optimise(loss)` and
    `record(**terms)`. Batches must depend only on (seed, step) for a resumed run to match."""

    def __init__(self, out: Path, modules: dict[str, nn.Module], opt: torch.optim.Optimizer, state: dict | None, *,
                 total: int, peak_lr: float, warmup: int, max_minutes: float | None = None,
                 save_every: int = 100, desc: str = "train", progress: bool = True, extra: dict | None = None,
                 log_every: int = 25):
        self.out, self.modules, self.opt, self.extra = Path(out), modules, opt, extra or {}
        self.total, self.peak_lr, self.warmup = total, peak_lr, warmup
        self.max_minutes, self.save_every, self.log_every = max_minutes, save_every, log_every
        self.desc, self.progress = desc, progress
        self.step, self.elapsed0, self.t0 = 0, 0.0, time.time()
        if state:
            for name, module in modules.items():
                module.load_state_dict(state[name])
            opt.load_state_dict(state["opt"])
            self.step, self.elapsed0 = int(state["step"]), float(state.get("elapsed", 0.0))
            print(f"resumed {self.out / 'last.pt'} at step {self.step}", flush=True)

    @property
    def elapsed(self) -> float:
        """Training wall time in seconds, over all resumed runs."""
        return self.elapsed0 + time.time() - self.t0

    def save(self) -> None:
        state = {name: m.state_dict() for name, m in self.modules.items()}
        atomic_torch_save({**state, **self.extra, "opt": self.opt.state_dict(), "step": self.step,
                           "elapsed": self.elapsed}, self.out / "last.pt")

    def steps(self) -> Iterator[int]:
        from tqdm import tqdm

        if self.step >= self.total:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._log = open(self.out / "log.jsonl", "a")
        self._bar = tqdm(total=self.total, initial=self.step, desc=self.desc, disable=not self.progress,
                         mininterval=10)
        self.t0 = time.time()
        for m in self.modules.values():
            m.train()
        while self.step < self.total:
            if self.max_minutes and time.time() - self.t0 > self.max_minutes * 60:
                print(f"stopping at --max-minutes {self.max_minutes}", flush=True)
                break
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, self.total, self.peak_lr, self.warmup)
            yield self.step
            self.step += 1
            self._bar.update(1)
            if self.step % self.save_every == 0:
                self.save()
        self._bar.close()
        self._log.close()
        self.save()
        print(f"trained to step {self.step}; wall time this run {time.time() - self.t0:.0f} s, "
              f"total {self.elapsed:.0f} s", flush=True)

    def optimise(self, loss: torch.Tensor, clip: float = 1.0) -> None:
        params = [p for m in self.modules.values() for p in m.parameters()]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        self.opt.step()

    def record(self, **terms: float | list) -> None:
        """Log the current step's terms (every log_every steps and the first)."""
        done = self.step + 1
        if done % self.log_every and done != 1:
            return
        self._log.write(json.dumps({"step": done, **terms, "t": round(self.elapsed, 1)}) + "\n")
        self._log.flush()
        self._bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items() if isinstance(v, float)}, refresh=False)
