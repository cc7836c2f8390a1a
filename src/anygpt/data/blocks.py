"""From corpora and their codes to packed, balanced, sharded blocks a trainer streams.

    anygpt blocks --config blocks.json --out data/tiny-blocks

The config (JSON) names the datasets, the text tokenizer, the block length and the shares:
    {"block_len": 4500, "seed": 0, "text_tokenizer": {"train_vocab": 4000},
     "datasets": [
       {"name": "speech-pairs", "kind": "pair", "modality": "speech", "corpus": "data/tiny/speech",
        "codes": "data/tiny-codes/speech", "text_field": "text", "x2text_prob": 0.5},
       {"name": "image-docs", "kind": "interleaved", "modality": "image", ...},
       {"name": "text", "kind": "text", "corpus": "data/tiny/text"},
       {"name": "chat", "kind": "chat", "corpus": "data/tiny-chat", "template": "MMGPT"}],
     "shares": {"speech-pairs": 0.4, "image-docs": 0.2, "text": 0.4}}

The output folder is self-describing: the expanded text tokenizer and anygpt.json (the token
specs of the codes used) sit beside the shards, so the LM is built with the same vocabulary.
Building blocks encodes no media (codes come from `anygpt tokenize`) and takes seconds to
minutes, so a killed build is simply run again; shards and index are written atomically.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from anygpt.data.balance import realised_shares, repeats_for_shares
from anygpt.data.codes_store import CodesStore
from anygpt.data.instruct.realise import chat_sample
from anygpt.data.packing import BlockPacker, Sample
from anygpt.data.pretraining import interleaved_samples, pair_samples, text_samples
from anygpt.data.shards import ShardWriter
from anygpt.errors import AnyGPTError
from anygpt.lm.checkpoint import ANYGPT_CONFIG, FolderConfig
from anygpt.lm.expand import add_modality_tokens
from anygpt.lm.sequence import SequenceCodec
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.media_io import atomic_path
from anygpt.modalities import modality_names
from anygpt.modalities.base import TokenSpec
from anygpt.parts import CodesPart
from anygpt.templates import Turn, get_chat_template

KINDS = ("pair", "interleaved", "text", "chat")


@dataclass
class DatasetConfig:
    name: str
    kind: str
    corpus: str
    modality: str | None = None
    codes: str | None = None
    text_field: str = "text"
    x2text_prob: float = 0.5
    splits: list[str] = field(default_factory=lambda: ["train"])
    template: str = "MMGPT"  # chat datasets: the chat template they are rendered with

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind in ("pair", "interleaved") and not (self.modality and self.codes):
            raise ValueError(f"dataset {self.name!r}: a {self.kind} dataset needs 'modality' and 'codes'")


@dataclass
class BlocksConfig:
    datasets: list[DatasetConfig]
    block_len: int = 4500
    seed: int = 0
    shares: dict[str, float] | None = None
    text_tokenizer: dict = field(default_factory=lambda: {"train_vocab": 4000})
    blocks_per_shard: int = 1024

    @classmethod
    def from_json(cls, path: str | Path) -> "BlocksConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            d["datasets"] = [DatasetConfig(**x) for x in d["datasets"]]
            return cls(**d)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise AnyGPTError(f"{path}: not a valid blocks config ({e})") from None


def _records(ds: DatasetConfig) -> list[dict]:
    manifest = Path(ds.corpus) / ("conversations.jsonl" if ds.kind == "chat" else "manifest.jsonl")
    if not manifest.exists():
        raise AnyGPTError(f"{manifest}: no manifest for dataset {ds.name!r}; build the corpus first")
    rows = [json.loads(l) for l in manifest.read_text(encoding="utf-8").splitlines() if l.strip()]
    return rows if ds.kind == "chat" else [r for r in rows if r.get("split", "train") in ds.splits]


def _text_tokenizer(cfg: BlocksConfig, datasets: dict[str, list[dict]]):
    tt = cfg.text_tokenizer
    if "path" in tt:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tt["path"], local_files_only=True)
    texts = [r[ds.text_field] for ds in cfg.datasets if ds.kind != "chat"
             for r in datasets[ds.name] if r.get(ds.text_field)]
    if not texts:
        raise AnyGPTError("no text found in the datasets to train the text tokenizer on")
    return train_text_tokenizer(texts, vocab_size=int(tt.get("train_vocab", 4000)))


def build_blocks(cfg: BlocksConfig, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Build the shards; return the report (counts, efficiency, shares, throughput)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    records = {ds.name: _records(ds) for ds in cfg.datasets}
    stores = {ds.name: CodesStore(Path(ds.codes)) for ds in cfg.datasets if ds.kind in ("pair", "interleaved")}
    specs_by_modality: dict[str, TokenSpec] = {}
    for ds in cfg.datasets:
        if ds.kind in ("pair", "interleaved"):
            used = [TokenSpec.from_dict(stores[ds.name].meta["token_spec"])]
        elif ds.kind == "chat":
            used = [TokenSpec.from_dict(d) for d in json.loads((Path(ds.corpus) / "meta.json").read_text())["specs"]]
        else:
            used = []
        for spec in used:
            if specs_by_modality.setdefault(spec.name, spec) != spec:
                raise AnyGPTError(f"dataset {ds.name!r}: {spec.name} codes from two different tokenizers")
    specs = [specs_by_modality[m] for m in modality_names() if m in specs_by_modality]
    tokenizer = _text_tokenizer(cfg, records)
    layout = add_modality_tokens(tokenizer, specs)
    codec = SequenceCodec(tokenizer, layout)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    writer = ShardWriter(out, cfg.block_len, [ds.name for ds in cfg.datasets], blocks_per_shard=cfg.blocks_per_shard)
    packers = {ds.name: BlockPacker(cfg.block_len, pad) for ds in cfg.datasets}
    sample_tokens = {ds.name: 0 for ds in cfg.datasets}
    counts: dict[str, dict[str, int]] = {ds.name: {} for ds in cfg.datasets}
    bar = tqdm(desc="blocks", unit="sample", disable=not progress)

    def run_pass(ds: DatasetConfig, rows: list[dict], pass_no: int) -> None:
        rng = random.Random(f"{cfg.seed}/{ds.name}/{pass_no}")
        for sample, label in _samples(ds, rows, stores.get(ds.name), codec, rng):
            sample_tokens[ds.name] += len(sample)
            counts[ds.name][label] = counts[ds.name].get(label, 0) + 1
            for block in packers[ds.name].add(sample):
                writer.add(block, ds.name)
            bar.update(1)

    for ds in cfg.datasets:
        run_pass(ds, records[ds.name], 0)
    natural = dict(sample_tokens)
    repeats = repeats_for_shares(natural, cfg.shares) if cfg.shares else {d: 1.0 for d in natural}
    for ds in cfg.datasets:
        r, rows = repeats.get(ds.name, 1.0), records[ds.name]
        extra_whole = int(r) - 1
        for p in range(1, 1 + extra_whole):
            run_pass(ds, rows, p)
        frac = r - int(r)
        if frac > 1e-9 and rows:
            part = random.Random(f"{cfg.seed}/{ds.name}/subset").sample(rows, max(1, round(frac * len(rows))))
            run_pass(ds, part, 1 + extra_whole)
    for ds in cfg.datasets:
        for block in packers[ds.name].flush():
            writer.add(block, ds.name)
    bar.close()

    elapsed = time.perf_counter() - t0
    packed = sum(p.tokens for p in packers.values())
    slots = sum(p.slots for p in packers.values())
    report = {
        "samples": counts,
        "sample_tokens_natural": natural,
        "repeats": repeats,
        "target_shares": cfg.shares,
        "realised_shares": realised_shares(sample_tokens),
        "packing_efficiency": packed / slots if slots else 0.0,
        "split_samples": sum(p.split_samples for p in packers.values()),
        "seconds": elapsed,
        "samples_per_second": sum(sum(c.values()) for c in counts.values()) / elapsed,
    }
    tokenizer.save_pretrained(out)
    with atomic_path(out / ANYGPT_CONFIG) as tmp:
        tmp.write_text(json.dumps(FolderConfig(specs, "MMGPT", {}, released=False).to_json(), indent=1, ensure_ascii=False))
    writer.close(report=report)
    return {**report, "blocks": writer.blocks_per_dataset}


def _samples(ds: DatasetConfig, rows: list[dict], store: CodesStore | None, codec: SequenceCodec,
             rng: random.Random) -> Iterator[tuple[Sample, str]]:
    if ds.kind == "chat":
        template = get_chat_template(ds.template)
        for r in rows:
            turns = [Turn(t["role"], codec.layout.parse_text(t["content"])) for t in r["turns"]]
            yield chat_sample(turns, template, codec), "spoken_instruction" if r.get("spoken") else "conversation"
        return
    if ds.kind == "text":
        texts = [r[ds.text_field] for r in rows if r.get(ds.text_field)]
        yield from ((s, "text") for s in text_samples(texts, codec))
        return
    order = list(rows)
    rng.shuffle(order)
    items = ((r[ds.text_field], CodesPart(ds.modality, store.get(r["id"])))
             for r in order if r["id"] in store and r.get(ds.text_field))
    if ds.kind == "pair":
        yield from ((s, f"{ds.modality}_{d}") for s, d in pair_samples(items, codec, rng, ds.x2text_prob))
    else:
        yield from ((s, "document") for s in interleaved_samples(items, codec, rng))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="anygpt blocks", description="Build packed, balanced training blocks.",
                                epilog="example:\n  anygpt blocks --config configs/blocks-tiny.json --out data/tiny-blocks\n\n"
                                       "The config format is in anygpt.data.blocks' docstring.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        report = build_blocks(BlocksConfig.from_json(a.config), a.out)
    except AnyGPTError as e:
        print(f"anygpt blocks: {e}")
        return 1
    print(format_report(report))
    return 0


def format_report(r: dict) -> str:
    lines = [f"{'dataset':<18} {'samples':>8} {'blocks':>7} {'repeats':>8} {'share':>7}"]
    for d, c in r["samples"].items():
        lines.append(f"{d:<18} {sum(c.values()):>8} {r['blocks'][d]:>7} {r['repeats'].get(d, 0):>8.2f} "
                     f"{r['realised_shares'][d]:>7.3f}   " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
    lines.append(f"packing efficiency {r['packing_efficiency']:.4f}; {r['samples_per_second']:.0f} samples/s; "
                 f"{r['split_samples']} samples longer than a block")
    return "\n".join(lines)
