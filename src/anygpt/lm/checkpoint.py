"""Model folders: the released AnyGPT (fnlp/AnyGPT-chat / -base layout) and our own.

Released folder: HF LLaMA (config.json, generation_config.json, pytorch_model*.bin or
*.safetensors with an index when sharded), LLaMA tokenizer files (tokenizer.model,
tokenizer_config.json, special_tokens_map.json) and added_tokens.json holding the modality
tokens. Our folders add `anygpt.json`: the layout's token specs, the chat template and which
modality tokenizers go with the model. Nothing is ever downloaded: everything is read with
local_files_only=True.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anygpt.errors import CheckpointError, UnsafePathError
from anygpt.files import safe_join
from anygpt.layout import TokenLayout
from anygpt.modalities import released_specs
from anygpt.token_spec import TokenSpec

ANYGPT_CONFIG = "anygpt.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


@dataclass
class FolderConfig:
    """Contents of anygpt.json (defaults describe a released folder, which has none)."""

    specs: list[TokenSpec] = field(default_factory=released_specs)
    chat_template: str = "MMGPT"
    # modality -> {"loader": registered tokenizer name[, "path": folder relative to the model]};
    # without a path the loader's shipped weights (e.g. {"loader": "compact"})
    tokenizers: dict[str, dict] = field(default_factory=dict)
    released: bool = True

    def to_json(self) -> dict:
        return {"format": "anygpt/1", "specs": [s.to_dict() for s in self.specs],
                "chat_template": self.chat_template, "tokenizers": self.tokenizers}

    @classmethod
    def from_json(cls, d: dict) -> "FolderConfig":
        return cls([TokenSpec.from_dict(s) for s in d["specs"]], d.get("chat_template", "MMGPT"),
                   d.get("tokenizers", {}), released=False)


def read_folder_config(path: Path) -> FolderConfig:
    cfg = path / ANYGPT_CONFIG
    if not cfg.exists():
        return FolderConfig()
    try:
        folder = FolderConfig.from_json(json.loads(cfg.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg}: not a valid anygpt config ({type(e).__name__}: {e})") from None
    for modality, entry in folder.tokenizers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("loader"), str) \
                or not isinstance(entry.get("path", ""), str):
            raise CheckpointError(f"{cfg}: tokenizers.{modality} must be {{\"loader\": NAME}} or "
                                  f"{{\"loader\": NAME, \"path\": FOLDER}}")
        if "path" in entry:
            try:
                safe_join(path, entry["path"], what=f"tokenizers.{modality}.path")
            except UnsafePathError as e:
                raise CheckpointError(f"{cfg}: {e}") from None
    return folder


def tokenizer_folder(path: Path, entry: dict) -> Path:
    """The folder of a modality tokenizer named in anygpt.json, inside the model folder."""
    return safe_join(path, entry["path"], what="tokenizer path")


def check_folder(path: Path) -> None:
    """Raise CheckpointError naming what is missing from a model folder."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: model folder not found")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: no config.json; expected a HF causal-LM folder (e.g. fnlp/AnyGPT-chat)")
    if not any((path / f).exists() for f in WEIGHT_FILES):
        raise CheckpointError(f"{path}: no weights; expected one of {', '.join(WEIGHT_FILES)}")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise CheckpointError(f"{path}: no tokenizer; expected {' or '.join(TOKENIZER_FILES)}")


def _check_json(file: Path) -> None:
    """A JSON file of the folder that does not parse: CheckpointError naming it (transformers'
    own error does not)."""
    if not file.is_file():
        return
    try:
        json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); the model folder is damaged") from None


def _check_weights(path: Path) -> None:
    """Every safetensors weight file must open (a truncated or corrupt one is named). Pickled
    .bin weights (the release's) are left to transformers, which loads them with weights_only."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{file}: not a readable safetensors file, perhaps truncated or corrupt ({e})") from None


def load_lm(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """-> (model, tokenizer, layout, FolderConfig). The released folder uses LLaMA's slow
    sentencepiece tokenizer, as the release does; pad id 0 and left padding for generation."""
    path = Path(path)
    check_folder(path)
    cfg = read_folder_config(path)
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json", "added_tokens.json"):
        _check_json(path / name)
    use_fast = not (cfg.released and (path / "tokenizer.model").exists())
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=use_fast, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; the message names the folder
        raise CheckpointError(f"{path}: its tokenizer files cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = 0
    tokenizer.padding_side = "left"
    layout = TokenLayout.from_tokenizer(tokenizer, cfg.specs)
    _check_weights(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
    except Exception as e:  # noqa: BLE001 - as above
        raise CheckpointError(f"{path}: the model cannot be loaded from config.json and its weights "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        raise CheckpointError(
            f"{path}: the model has {rows} embedding rows but the tokenizer has {len(tokenizer)} tokens; "
            "the vocabulary was expanded without resizing the model"
        )
    return model, tokenizer, layout, cfg


def save_lm(path: str | Path, model, tokenizer, cfg: FolderConfig | None, *, dtype: torch.dtype | None = None) -> Path:
    """Write a model folder atomically (anygpt.nn.weights.atomic_folder): safetensors weights
    (cast to `dtype` if given, the model itself untouched), the tokenizer, and anygpt.json
    unless cfg is None (a plain HF folder)."""
    from anygpt.nn.weights import atomic_folder

    path = Path(path)
    state = None
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    with atomic_folder(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state)
        if dtype is not None:  # save_pretrained records the model's own dtype; record the file's
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = str(dtype).removeprefix("torch.")
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(tmp)
        if cfg is not None:
            (tmp / ANYGPT_CONFIG).write_text(json.dumps(cfg.to_json(), indent=1, ensure_ascii=False))
    return path
