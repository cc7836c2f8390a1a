"""The config of `anygpt blocks`, and reading each dataset's records.

The config (JSON) names the datasets, the text tokenizer, the block length and the shares:
    {"block_len": 4500, "seed": 0, "text_tokenizer": {"train_vocab": 4000},
     "datasets": [
       {"name": "speech-pairs", "kind": "pair", "modality": "speech", "corpus": "data/tiny/speech",
        "codes": "data/tiny-codes/speech", "text_field": "text", "x2text_prob": 0.5},
       {"name": "image-docs", "kind": "interleaved", "modality": "image", ...},
       {"name": "text", "kind": "text", "corpus": "data/tiny/text"},
       {"name": "chat", "kind": "chat", "corpus": "data/tiny-chat", "template": "MMGPT"}],
     "shares": {"speech-pairs": 0.4, "image-docs": 0.2, "text": 0.4}}

Per pair or interleaved dataset, optionally:
    "excerpt_seconds": [2, 8]   each music item is a random excerpt of the clip, its length
                                uniform between the two bounds (seconds, whole frames, at most
                                the clip), drawn anew per sample and pass from the seed; default
                                null: whole clips. Only for variable-length modalities whose text
                                describes the whole piece (music captions), not for speech (a
                                transcript must match the audio) or images. Needs the manifest's
                                "duration" (seconds) to turn seconds into frames.
    "per_document": [2, 4]      interleaved datasets: media items per document, uniform in range.
    "cfg_drop": 0.1             pair datasets: the share of text-to-media pairs whose text is
                                dropped (empty), for classifier-free guidance when decoding
                                (anygpt.lm.guidance); default 0.
and at the top level "top_up": true (default): each dataset's last block is filled with samples
of one more pass over it (a little oversampling, counted in samples and shares), so that a small
dataset does not end in a half-empty block; false: it ends in padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anygpt.cli_flags import Number, fraction, non_negative_float, positive_float, seed_int
from anygpt.data.conversations import CONVERSATIONS
from anygpt.data.pretraining import NO_EXCERPTS, excerpt_frames
from anygpt.errors import AnyGPTError
from anygpt.manifest import read_json, read_manifest

KINDS = ("pair", "interleaved", "text", "chat")
MAX_BLOCK_LEN = 131072  # tokens; far above any context trained here, far below what exhausts memory
MAX_SHARD_TOKENS = 1 << 26  # block_len x blocks_per_shard: a shard's arrays stay under 512 MB


@dataclass
class DatasetConfig:
    name: str
    kind: str
    corpus: str
    modality: str | None = None
    codes: str | None = None
    text_field: str = "text"
    x2text_prob: float = 0.5
    cfg_drop: float = 0.0  # pair datasets: share of text-to-media pairs with the text dropped
    splits: list[str] = field(default_factory=lambda: ["train"])
    template: str = "MMGPT"  # chat datasets: the chat template they are rendered with
    excerpt_seconds: list[float] | None = None  # [min, max]: random excerpts of audio clips; None: whole
    per_document: list[int] = field(default_factory=lambda: [2, 4])  # interleaved: media items per document

    def __post_init__(self) -> None:
        for key in ("name", "kind", "corpus", "text_field", "template"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"dataset {self.name!r}: {key} must be a non-empty string, not {getattr(self, key)!r}")
        self.x2text_prob = fraction.check(self.x2text_prob, f"dataset {self.name!r}: x2text_prob")
        self.cfg_drop = fraction.check(self.cfg_drop, f"dataset {self.name!r}: cfg_drop")
        if not isinstance(self.per_document, list) or not all(isinstance(n, int) and not isinstance(n, bool)
                                                               for n in self.per_document):
            raise ValueError(f"dataset {self.name!r}: per_document must be [min, max] whole numbers, not {self.per_document!r}")
        if self.excerpt_seconds is not None:
            if not isinstance(self.excerpt_seconds, list):
                raise ValueError(f"dataset {self.name!r}: excerpt_seconds must be [min, max], not {self.excerpt_seconds!r}")
            self.excerpt_seconds = [positive_float.check(x, f"dataset {self.name!r}: excerpt_seconds")
                                    for x in self.excerpt_seconds]
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind in ("pair", "interleaved") and not (self.modality and self.codes):
            raise ValueError(f"dataset {self.name!r}: a {self.kind} dataset needs 'modality' and 'codes'")
        if self.excerpt_seconds is not None:
            if self.kind not in ("pair", "interleaved"):
                raise ValueError(f"dataset {self.name!r}: excerpt_seconds is for pair and interleaved datasets only")
            if self.modality in NO_EXCERPTS:
                raise ValueError(f"dataset {self.name!r}: no excerpts of {self.modality} ({NO_EXCERPTS[self.modality]}); "
                                 "remove excerpt_seconds")
            if len(self.excerpt_seconds) != 2 or not 0 < self.excerpt_seconds[0] <= self.excerpt_seconds[1]:
                raise ValueError(f"dataset {self.name!r}: excerpt_seconds must be [min, max] with 0 < min <= max, "
                                 f"not {self.excerpt_seconds}")
        if self.cfg_drop and self.kind != "pair":
            raise ValueError(f"dataset {self.name!r}: cfg_drop is for pair datasets only, not {self.kind}")
        if len(self.per_document) != 2 or not 1 <= self.per_document[0] <= self.per_document[1]:
            raise ValueError(f"dataset {self.name!r}: per_document must be [min, max] with 1 <= min <= max, "
                             f"not {self.per_document}")

    def excerpt_bounds(self, row: dict, frames: int) -> tuple[int, int] | None:
        """(min, max) excerpt length in frames of the item of this manifest row, or None (whole)."""
        if self.excerpt_seconds is None:
            return None
        if not row.get("duration"):
            raise AnyGPTError(f"dataset {self.name!r}: item {row.get('id')!r} has no 'duration' in its manifest, "
                              "needed to cut excerpts in seconds; add it or remove excerpt_seconds")
        return excerpt_frames(tuple(self.excerpt_seconds), frames, float(row["duration"]))


@dataclass
class BlocksConfig:
    datasets: list[DatasetConfig]
    block_len: int = 4500
    seed: int = 0
    shares: dict[str, float] | None = None
    text_tokenizer: dict = field(default_factory=lambda: {"train_vocab": 4000})
    blocks_per_shard: int = 1024
    top_up: bool = True  # fill each dataset's last block with samples of one more pass

    def __post_init__(self) -> None:
        self.block_len = Number(int, low=8, high=MAX_BLOCK_LEN).check(self.block_len, "block_len")
        self.seed = seed_int.check(self.seed, "seed")
        self.blocks_per_shard = Number(int, low=1, high=MAX_SHARD_TOKENS // self.block_len).check(
            self.blocks_per_shard, f"blocks_per_shard (at most {MAX_SHARD_TOKENS:,} tokens a shard)")
        if not isinstance(self.top_up, bool):
            raise ValueError(f"top_up: must be true or false, not {self.top_up!r}")
        if not isinstance(self.text_tokenizer, dict):
            raise ValueError(f"text_tokenizer: must be an object, not {self.text_tokenizer!r}")
        if self.shares is not None:
            if not isinstance(self.shares, dict):
                raise ValueError(f"shares: must be an object of dataset name -> share, not {self.shares!r}")
            names = {ds.name for ds in self.datasets}
            for name, share in self.shares.items():
                if name not in names:
                    raise ValueError(f"shares: {name!r} is not a dataset of this config ({', '.join(sorted(names))})")
                self.shares[name] = non_negative_float.check(share, f"shares: {name!r}")
            if not sum(self.shares.values()) > 0:
                raise ValueError("shares: at least one share must be above 0")

    @classmethod
    def from_json(cls, path: str | Path) -> "BlocksConfig":
        path = Path(path)
        d = read_json(path, what="blocks config")
        try:
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            if not isinstance(d.get("datasets"), list) or not all(isinstance(x, dict) for x in d["datasets"]):
                raise ValueError("datasets: must be a list of objects")
            d["datasets"] = [DatasetConfig(**x) for x in d["datasets"]]
            return cls(**d)
        except (KeyError, TypeError, ValueError) as e:
            raise AnyGPTError(f"{path}: not a valid blocks config ({e}); "
                              "the format is in anygpt.data.blocks' docstring (docs/sequences.md)") from None


def dataset_records(ds: DatasetConfig, part: int = 0, parts: int = 1) -> list[dict]:
    """The dataset's rows of its splits (chat: its conversations); with parts > 1 only every
    parts-th line of the manifest, from line `part`."""
    manifest = Path(ds.corpus) / (CONVERSATIONS if ds.kind == "chat" else "manifest.jsonl")
    if not manifest.exists():
        raise AnyGPTError(f"{manifest}: no manifest for dataset {ds.name!r}; build the corpus first")
    return read_manifest(manifest, splits=None if ds.kind == "chat" else ds.splits,
                         require=("id", "turns") if ds.kind == "chat" else ("id",), part=part, parts=parts)
