"""Shipped weights: written as float16 safetensors + config.json (both atomically) and read
back with errors that name the file (missing, truncated, corrupt, not fitting the config)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from anygpt.errors import CheckpointError
from anygpt.files import atomic_folder, write_json

TRAINING_ONLY = ("embed_sum", "cluster_size")  # EMA statistics of the quantizers


def inference_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """module.state_dict() without training-only buffers; float tensors in float16 except
    codebooks (their nearest-neighbour search keeps float32 so encoding stays exact).
    load_state_dict casts float16 back to the module's float32."""
    out = {}
    for k, v in module.state_dict().items():
        if k.endswith(TRAINING_ONLY):
            continue
        v = v.detach().contiguous().clone()
        out[k] = v.half() if v.is_floating_point() and "codebook" not in k else v
    return out


def save_weights(folder: str | Path, state: dict[str, torch.Tensor], meta: dict,
                 files: dict[str, dict] | None = None, *, flag: str = "--export") -> Path:
    """folder/model.safetensors (state) + folder/config.json (meta) [+ `files`: name ->
    tensors for a name ending in .safetensors, else a JSON value]; -> folder.

    The folder is written whole beside `folder` and renamed into place (files.atomic_folder), so
    a kill never leaves half an export; an existing folder must be one of our model folders (its
    README, *.md, is kept, every other file replaced); any other is refused, naming `flag`."""
    from safetensors.torch import save_file

    written = {"model.safetensors": state, "config.json": meta, **(files or {})}
    with atomic_folder(folder, "model", flag=flag) as tmp:
        for name, value in written.items():
            if name.endswith(".safetensors"):
                save_file({k: v.detach().contiguous() for k, v in value.items()}, str(tmp / name))
            else:
                write_json(tmp / name, value, indent=2)
    return Path(folder)


def read_meta(folder: str | Path) -> dict:
    """folder/config.json as save_weights wrote it (CheckpointError naming the file otherwise)."""
    path = Path(folder) / "config.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; a weights folder holds config.json and model.safetensors") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid JSON config ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return meta


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError naming the file if it is missing,
    truncated or not safetensors (never a pickle: nothing in it can run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file, perhaps truncated or corrupt ({e})") from None


def load_inference_state(module: torch.nn.Module, folder: str | Path,
                         optional: tuple[str, ...] = TRAINING_ONLY) -> torch.nn.Module:
    """folder/model.safetensors -> module (in place; float16 cast back to the module's dtype).
    Keys ending in `optional` may be missing; any other mismatch raises CheckpointError naming
    the file."""
    path = Path(folder) / "model.safetensors"
    try:
        missing, unexpected = module.load_state_dict(read_safetensors(path), strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise CheckpointError(f"{path}: weights do not fit the config ({str(e).splitlines()[0]})") from None
    missing = [k for k in missing if not k.endswith(optional)]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return module


def load_matching(module: torch.nn.Module, folder: str | Path) -> list[str]:
    """Start training from another model's weights (`--init` of the tokenizer trainers):
    every tensor of folder/model.safetensors whose name and shape `module` has is loaded (cast
    to the module's dtype) -> the names of the module's tensors left as initialised."""
    given = read_safetensors(Path(folder) / "model.safetensors")
    own = module.state_dict()
    fits = {k: v.to(own[k].dtype) for k, v in given.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(fits, strict=False)
    return sorted(set(own) - set(fits))

