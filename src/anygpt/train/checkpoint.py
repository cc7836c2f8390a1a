"""Training checkpoints as safetensors + JSON: nothing is ever unpickled, not even our own files.

A run folder holds `checkpoints/step-NNNNNNNN/`, each with
    <module>.safetensors      one file per trained module (its state_dict)
    optimizer.safetensors     every tensor of the optimizer's state (flattened by path) and the
                              torch and numpy RNG states
    state.json                step, elapsed time, the optimizer state's structure and scalars,
                              the Python RNG state, the data position and the run's config
A checkpoint is written into a temporary folder and renamed into place when complete, so a kill
at any moment leaves either the previous checkpoints or the new one, never half of one; the
newest K are kept.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anygpt.cli_flags import Number, non_negative_float
from anygpt.errors import AnyGPTError, CheckpointError
from anygpt.files import atomic_folder, output_kind, safe_join, write_json
from anygpt.manifest import read_json

STATE = "state.json"
PREFIX = "step-"
STEP_NAME = re.compile(r"step-\d{8,}")
MAX_STEP = 10**12  # far more steps than any run takes; a bigger number is a tampered file


def flatten_tree(obj, prefix: str = "") -> tuple[dict[str, torch.Tensor], object]:
    """A nested structure of dicts, lists, tuples, tensors and JSON scalars (an optimizer's
    state_dict: int parameter keys, tuples, nested groups) -> (tensors by path, a JSON skeleton naming them)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x, path: str):
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().contiguous().cpu()
            return {"__tensor__": path}
        if isinstance(x, dict):
            if all(isinstance(k, str) for k in x):
                return {"__dict__": {k: walk(v, f"{path}/{k}") for k, v in x.items()}}
            return {"__items__": [[k, walk(v, f"{path}/{k}")] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            items = [walk(v, f"{path}/{i}") for i, v in enumerate(x)]
            return {"__tuple__": items} if isinstance(x, tuple) else items
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise CheckpointError(f"cannot store a {type(x).__name__} at {path or '/'} in a checkpoint")

    return tensors, walk(obj, prefix)


def unflatten_tree(tensors: dict[str, torch.Tensor], skeleton):
    def build(x):
        """A missing tensor raises KeyError (the caller names the file)."""
        if isinstance(x, list):
            return [build(v) for v in x]
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__dict__" in x:
                return {k: build(v) for k, v in x["__dict__"].items()}
            if "__items__" in x:
                return {k: build(v) for k, v in x["__items__"]}
            if "__tuple__" in x:
                return tuple(build(v) for v in x["__tuple__"])
        return x

    return build(skeleton)


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """The torch, numpy and Python RNG states as (tensors, JSON)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return ({"rng/torch": torch.get_rng_state(), "rng/numpy": torch.from_numpy(keys.astype(np.int64))},
            {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
             "python": [py_version, list(py_state), py_gauss]})


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))


class CheckpointFolder:
    """OUT/checkpoints: save(step, ...), latest(), load(path), keeping the newest `keep`."""

    def __init__(self, run_dir: str | Path, keep: int = 3):
        self.root = Path(run_dir) / "checkpoints"
        self.keep = max(1, keep)

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first: folders named step-NNNNNNNN holding state.json (a
        folder without state.json, or of another name, never counts)."""
        if not self.root.is_dir():
            return []
        done = [p for p in self.root.iterdir() if STEP_NAME.fullmatch(p.name) and (p / STATE).is_file()]
        return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, modules: dict[str, dict[str, torch.Tensor]], optimizer: dict | None,
             state: dict) -> Path:
        """modules: name -> state_dict; optimizer: a torch optimizer state_dict (or None)."""
        final = self.root / f"{PREFIX}{step:08d}"
        with atomic_folder(final, "checkpoint", flag="checkpoint", keep=()) as tmp:
            for name, sd in modules.items():
                save_file(_contiguous(sd), str(tmp / f"{name}.safetensors"))
            meta = dict(state)
            rng_tensors, meta["rng"] = rng_state()
            opt_tensors, meta["optimizer"] = flatten_tree(optimizer, "opt") if optimizer is not None else ({}, None)
            save_file({**opt_tensors, **rng_tensors}, str(tmp / "optimizer.safetensors"))
            meta["modules"] = sorted(modules)
            write_json(tmp / STATE, meta)
        for old in self.all()[:-self.keep]:
            if output_kind(old) == "checkpoint":  # never a folder we did not write
                shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict | None, dict]:
        """The checked reader of one checkpoint folder -> (modules, optimizer state_dict or None,
        state). RNG states are restored. Every field of state.json is checked (its step is the
        folder's, the times are finite, the modules are files inside the folder), and a
        tampered or corrupt part raises CheckpointError naming the folder and the field."""
        def bad(problem: str) -> CheckpointError:
            return CheckpointError(f"{path}: {problem}; delete this folder to resume from the one before it")

        try:
            state = read_json(path / STATE, what="checkpoint state")
            if not isinstance(state, dict):
                raise ValueError("state.json: not a JSON object")
            step = Number(int, low=0, high=MAX_STEP).check(state.get("step"), "state.json: step")
            if STEP_NAME.fullmatch(path.name) and step != int(path.name[len(PREFIX):]):
                raise ValueError(f"state.json: step {step} is not the folder's step {path.name}")
            state["elapsed"] = non_negative_float.check(state.get("elapsed", 0.0), "state.json: elapsed")
            if not isinstance(state.get("data", {}), dict):
                raise ValueError("state.json: data is not an object")
            names = state.get("modules")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("state.json: modules is not a list of names")
            files = {n: safe_join(path, f"{n}.safetensors", what="state.json: module") for n in names}
            modules = {name: load_file(str(f)) for name, f in files.items()}
            extra = load_file(str(path / "optimizer.safetensors"))
        except (OSError, ValueError, SafetensorError, AnyGPTError) as e:
            raise bad(f"unreadable checkpoint ({e})") from None
        try:
            opt = unflatten_tree(extra, state["optimizer"]) if state.get("optimizer") is not None else None
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"optimizer.safetensors does not hold what state.json names ({type(e).__name__}: {e})") from None
        try:
            set_rng_state(extra, state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise bad(f"the saved random-number state is not usable ({type(e).__name__}: {e})") from None
        return modules, opt, state


def check_optimizer_shapes(optimizer: torch.optim.Optimizer, where: Path) -> None:
    """After loading a checkpoint: every per-parameter state tensor that is not a scalar (Adam's
    moments) must have its parameter's shape (CheckpointError naming the folder otherwise)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                    raise CheckpointError(f"{where}: optimizer state {key!r} has shape {tuple(value.shape)}, its "
                                          f"parameter {tuple(param.shape)}; delete this checkpoint to resume from "
                                          "the one before it")


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared or strided storage: give each tensor its own contiguous copy."""
    out, seen = {}, set()
    for k, v in sd.items():
        v = v.detach().cpu()
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        out[k] = v.clone().contiguous() if (ptr in seen or not v.is_contiguous()) else v
        if ptr is not None:
            seen.add(ptr)
    return out
