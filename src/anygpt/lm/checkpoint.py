"""Model folders: the released AnyGPT (fnlp/AnyGPT-chat / -base layout) and our own.

Released folder: HF LLaMA (config.json, generation_config.json, pytorch_model*.bin or
*.safetensors with an index when sharded), LLaMA tokenizer files (tokenizer.model,
tokenizer_config.json, special_tokens_map.json) and added_tokens.json holding the modality
tokens. Our folders add `anygpt.json`: the layout's token specs, the chat template and which
modality tokenizers go with the model. Nothing is ever downloaded: everything is read with
local_files_only=True.

Our folders load without transformers when they can (anygpt.lm.plain_llama and
anygpt.lm.plain_tokenizer: the same tensors and token ids, a cold start seconds shorter);
the released folder and any other loads through transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from anygpt.errors import CheckpointError, UnsafePathError
from anygpt.files import safe_join, write_json
from anygpt.layout import TokenLayout
from anygpt.lm.hf_folder import load_lm_hf, load_text_tokenizer_hf, read_json
from anygpt.modalities import released_specs
from anygpt.token_spec import TokenSpec

ANYGPT_CONFIG = "anygpt.json"
INSTRUCTION_DIRECTIONS = ("from_text", "to_text")  # FolderConfig.instruction_prompts
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
    # reply modality -> GenerationSettings fields the model was trained for, over that
    # modality's preset (e.g. {"image": {"do_sample": false, "cfg_scale": 1.5}}); optional
    generation: dict[str, dict] = field(default_factory=dict)
    # modality -> the directions ("from_text", "to_text") in which a single request is written
    # as that modality's pretraining instruction rather than the chat template: a text-only
    # request for a reply of the modality (the request as the instruction's text), or a text
    # request with one attachment of it for a text reply (the attachment as its media); where
    # the model learnt the ability (anygpt-tiny's 200 chat steps taught the reply's modality,
    # not drawing, captioning or transcribing in that format); optional
    instruction_prompts: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"format": "anygpt/1", "specs": [s.to_dict() for s in self.specs],
               "chat_template": self.chat_template, "tokenizers": self.tokenizers}
        optional = {"generation": self.generation, "instruction_prompts": self.instruction_prompts}
        return {**out, **{k: v for k, v in optional.items() if v}}

    @classmethod
    def from_json(cls, d: dict) -> "FolderConfig":
        return cls([TokenSpec.from_dict(s) for s in d["specs"]], d.get("chat_template", "MMGPT"),
                   d.get("tokenizers", {}), released=False, generation=d.get("generation", {}),
                   instruction_prompts=d.get("instruction_prompts", {}))


def read_folder_config(path: Path) -> FolderConfig:
    cfg = path / ANYGPT_CONFIG
    if not cfg.exists():
        return FolderConfig()
    try:
        folder = FolderConfig.from_json(json.loads(cfg.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg}: not a valid anygpt config ({type(e).__name__}: {e})") from None
    names = [s.name for s in folder.specs]
    check_generation_defaults(folder.generation, names, f"{cfg}: generation")
    check_instruction_prompts(folder.instruction_prompts, names, f"{cfg}: instruction_prompts")
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


def check_generation_defaults(generation, modalities: list[str], where: str) -> None:
    """CheckpointError naming the entry unless `generation` maps "text" or a modality of the
    model to valid GenerationSettings fields."""
    from anygpt.lm.generation import GenerationSettings

    if not isinstance(generation, dict):
        raise CheckpointError(f"{where}: must be an object of reply modality -> generation settings")
    for modality, fields in generation.items():
        if modality not in ("text", *modalities):
            raise CheckpointError(f"{where}.{modality}: not a modality of this model "
                                  f"(text, {', '.join(modalities)})")
        try:
            GenerationSettings(**fields).check()
        except (TypeError, ValueError) as e:  # an unknown field, or one out of range
            raise CheckpointError(f"{where}.{modality}: {e}") from None


def check_instruction_prompts(routes, modalities: list[str], where: str) -> None:
    """CheckpointError naming the entry unless `routes` maps modalities of the model to lists
    of the directions from_text and to_text."""
    if not isinstance(routes, dict):
        raise CheckpointError(f"{where}: must be an object of modality -> directions")
    for modality, directions in routes.items():
        if modality not in modalities:
            raise CheckpointError(f"{where}.{modality}: not a modality of this model ({', '.join(modalities)})")
        if not isinstance(directions, list) or not set(directions) <= set(INSTRUCTION_DIRECTIONS):
            raise CheckpointError(f"{where}.{modality}: must be a list of {' and '.join(INSTRUCTION_DIRECTIONS)}; "
                                  f"it is {directions!r}")


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


def load_lm(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu", plain: bool = False):
    """-> (model, tokenizer, layout, FolderConfig). plain: read our folders without
    transformers when they allow it (PlainLlama, PlainTokenizer: the generation engine runs
    them, `to_hf()` gives transformers' objects; AnyGPT.from_pretrained asks for this);
    otherwise, and always for the release, HF's LlamaForCausalLM and tokenizer. The released
    folder uses LLaMA's slow sentencepiece tokenizer, as the release does; pad id 0 and left
    padding for generation."""
    path = Path(path)
    check_folder(path)
    cfg = read_folder_config(path)
    plain = plain and not cfg.released and device == "cpu"
    tokenizer = None
    if plain:  # reads and checks the folder's tokenizer files itself
        from anygpt.lm.plain_tokenizer import PlainTokenizer

        tokenizer = PlainTokenizer.from_folder(path)
    if tokenizer is None:
        for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json", "added_tokens.json"):
            if (path / name).is_file():
                read_json(path / name)
        tokenizer = load_text_tokenizer_hf(path, use_fast=not (cfg.released and (path / "tokenizer.model").exists()))
    layout = TokenLayout.from_tokenizer(tokenizer, cfg.specs)
    _check_weights(path)
    model = None
    if plain:
        from anygpt.lm.plain_llama import PlainLlama

        model = PlainLlama.from_folder(path, dtype=dtype)
    if model is None:
        model = load_lm_hf(path, dtype=dtype, device=device)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        raise CheckpointError(
            f"{path}: the model has {rows} embedding rows but the tokenizer has {len(tokenizer)} tokens; "
            "the vocabulary was expanded without resizing the model"
        )
    return model, tokenizer, layout, cfg


def save_lm(path: str | Path, model, tokenizer, cfg: FolderConfig | None, *, dtype: torch.dtype | None = None,
            flag: str = "folder", inputs: dict | None = None) -> Path:
    """Write a model folder atomically (anygpt.files.atomic_folder): safetensors weights
    (cast to `dtype` if given, the model itself untouched), the tokenizer, and anygpt.json
    unless cfg is None (a plain HF folder). `path` must be new, empty or one of our model
    folders, and apart from `inputs` (flag -> path); OutputError naming `flag` otherwise."""
    from anygpt.files import atomic_folder

    path = Path(path)
    state = None
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    with atomic_folder(path, "model", flag=flag, inputs=inputs) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state)
        if dtype is not None:  # save_pretrained records the model's own dtype; record the file's
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = str(dtype).removeprefix("torch.")
            write_json(tmp / "config.json", config, indent=2, sort_keys=True)
        tokenizer.save_pretrained(tmp)
        if cfg is not None:
            write_json(tmp / ANYGPT_CONFIG, cfg.to_json())
    return path
