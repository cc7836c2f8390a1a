"""From corpora and their codes to packed, balanced, sharded blocks a trainer streams.

    anygpt blocks --config blocks.json --out data/tiny-blocks
    anygpt blocks --config blocks.json --out data/tiny-blocks --check      # decode back, check masks
    anygpt blocks --config blocks.json --out blocks/part-3 --part 3 --parts 8   # one machine's part

The config (JSON: datasets, text tokenizer, block length, shares) is read by
anygpt.data.blocks_config, whose docstring gives the format.

The output folder is self-describing: the expanded text tokenizer and anygpt.json (the token
specs of the codes used) sit beside the shards, so the LM is built with the same vocabulary.
Building blocks encodes no media (codes come from `anygpt tokenize`) and takes seconds to
minutes, so a killed build is simply run again; shards and index are written atomically.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from anygpt.data.balance import realised_shares, repeats_for_shares
from anygpt.data.blocks_config import BlocksConfig, DatasetConfig, dataset_records  # noqa: F401  (also from here)
from anygpt.data.codes_store import CodesStore
from anygpt.data.conversations import CONVERSATIONS, chat_sample, record_turns
from anygpt.data.packing import BlockPacker, Sample
from anygpt.data.pretraining import excerpt, interleaved_samples, pair_samples, text_samples
from anygpt.data.shards import ShardWriter
from anygpt.errors import AnyGPTError
from anygpt.files import claim_output_dir, mark_output_dir, write_json
from anygpt.lm.checkpoint import ANYGPT_CONFIG, FolderConfig
from anygpt.lm.expand import add_modality_tokens
from anygpt.lm.sequence import SequenceEncoder
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.manifest import read_json
from anygpt.modalities import modality_names
from anygpt.parts import CodesPart
from anygpt.templates import get_chat_template
from anygpt.token_spec import TokenSpec


def _text_tokenizer(cfg: BlocksConfig, datasets: dict[str, list[dict]]):
    tt = cfg.text_tokenizer
    if "path" in tt:  # a folder, a .gguf file or a named base LM (anygpt.lm.base_lm)
        from anygpt.lm.base_lm import load_text_tokenizer

        return load_text_tokenizer(tt["path"])
    texts = [r[ds.text_field] for ds in cfg.datasets if ds.kind != "chat"
             for r in datasets[ds.name] if r.get(ds.text_field)]
    if not texts:
        raise AnyGPTError("no text found in the datasets to train the text tokenizer on")
    return train_text_tokenizer(texts, vocab_size=int(tt.get("train_vocab", 4000)))


def build_blocks(cfg: BlocksConfig, out_dir: str | Path, *, progress: bool = True, part: int = 0,
                 parts: int = 1) -> dict:
    """Build the shards; return the report (counts, efficiency, shares, throughput).

    part/parts: build from every parts-th manifest line only (one machine's share of a large
    corpus, into its own out_dir); the text tokenizer must then be given by path, so that all
    parts share one vocabulary."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    if not 0 <= part < parts:
        raise AnyGPTError(f"--part {part} is not in 0..{parts - 1}")
    if parts > 1 and "path" not in cfg.text_tokenizer:
        raise AnyGPTError("a build in parts needs one text tokenizer for all parts: set \"text_tokenizer\": "
                          "{\"path\": ...} in the config (e.g. the folder of an earlier build, "
                          "such as one of a sample of the corpus)")
    claim_output_dir(out, "blocks", inputs=blocks_inputs(cfg))
    records = {ds.name: dataset_records(ds, part, parts) for ds in cfg.datasets}
    stores = {ds.name: CodesStore(Path(ds.codes), only={r["id"] for r in records[ds.name]})
              for ds in cfg.datasets if ds.kind in ("pair", "interleaved")}
    specs_by_modality: dict[str, TokenSpec] = {}
    for ds in cfg.datasets:
        if ds.kind in ("pair", "interleaved"):
            used = [TokenSpec.from_dict(stores[ds.name].meta["token_spec"])]
        elif ds.kind == "chat":
            used = [TokenSpec.from_dict(d) for d in read_json(Path(ds.corpus) / "meta.json", what="conversations meta")["specs"]]
        else:
            used = []
        for spec in used:
            if specs_by_modality.setdefault(spec.name, spec) != spec:
                raise AnyGPTError(f"dataset {ds.name!r}: {spec.name} codes from two different tokenizers")
    specs = [specs_by_modality[m] for m in modality_names() if m in specs_by_modality]
    tokenizer = _text_tokenizer(cfg, records)
    layout = add_modality_tokens(tokenizer, specs)
    encoder = SequenceEncoder(tokenizer, layout)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    out.mkdir(parents=True, exist_ok=True)
    mark_output_dir(out, "blocks")  # ours from now on: a rerun may replace what is here
    writer = ShardWriter(out, cfg.block_len, [ds.name for ds in cfg.datasets], blocks_per_shard=cfg.blocks_per_shard)
    packers = {ds.name: BlockPacker(cfg.block_len, pad) for ds in cfg.datasets}
    sample_tokens = {ds.name: 0 for ds in cfg.datasets}
    counts: dict[str, dict[str, int]] = {ds.name: {} for ds in cfg.datasets}
    topped_up: dict[str, int] = {}
    bar = tqdm(desc="blocks", unit="sample", disable=not progress)

    def run_pass(ds: DatasetConfig, rows: list[dict], pass_no: int) -> None:
        rng = random.Random(f"{cfg.seed}/{ds.name}/{pass_no}")
        for sample, label in _samples(ds, rows, stores.get(ds.name), encoder, rng):
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
            subset = random.Random(f"{cfg.seed}/{ds.name}/subset").sample(rows, max(1, round(frac * len(rows))))
            run_pass(ds, subset, 1 + extra_whole)
    for ds in cfg.datasets:
        # the last block's room is topped up from one more pass (a little oversampling)
        rng = random.Random(f"{cfg.seed}/{ds.name}/top-up")
        packer = packers[ds.name]
        more = _samples(ds, records[ds.name], stores.get(ds.name), encoder, rng) if cfg.top_up else None
        for block in packer.flush(top_up=more):
            writer.add(block, ds.name)
        for label in packer.topped_up:
            counts[ds.name][label] = counts[ds.name].get(label, 0) + 1
        sample_tokens[ds.name] += packer.topped_up_tokens
        topped_up[ds.name] = len(packer.topped_up)
    bar.close()

    elapsed = time.perf_counter() - t0
    packed = sum(p.tokens for p in packers.values())
    slots = sum(p.slots for p in packers.values())
    modality = {ds.name: dataset_modality(ds) for ds in cfg.datasets}
    realised = realised_shares(sample_tokens)
    target = normalised_shares(cfg.shares) if cfg.shares else None
    report = {
        "samples": counts,
        "sample_tokens_natural": natural,
        "sample_tokens": sample_tokens,
        "repeats": repeats,
        "target_shares": target,
        "realised_shares": realised,
        "modality": modality,
        "target_modality_shares": by_modality(target, modality) if target else None,
        "realised_modality_shares": by_modality(realised, modality),
        "packing_efficiency": packed / slots if slots else 0.0,
        "packing_efficiency_per_dataset": {d: p.efficiency for d, p in packers.items()},
        "split_samples": sum(p.split_samples for p in packers.values()),
        "topped_up_samples": topped_up,
        "seconds": elapsed,
        "samples_per_second": sum(sum(c.values()) for c in counts.values()) / elapsed,
        "part": part,
        "parts": parts,
    }
    tokenizer.save_pretrained(out)
    write_json(out / ANYGPT_CONFIG, FolderConfig(specs, "MMGPT", {}, released=False).to_json())
    writer.close(report=report)
    return {**report, "blocks": writer.blocks_per_dataset}


def _samples(ds: DatasetConfig, rows: list[dict], store: CodesStore | None, encoder: SequenceEncoder,
             rng: random.Random) -> Iterator[tuple[Sample, str]]:
    if ds.kind == "chat":
        template = get_chat_template(ds.template)
        for r in rows:
            try:
                turns = record_turns(r, encoder.layout)
            except (AnyGPTError, KeyError, TypeError, ValueError) as e:
                raise AnyGPTError(f"{Path(ds.corpus) / CONVERSATIONS}: conversation {r.get('id')!r}: {e}") from None
            yield chat_sample(turns, template, encoder), "spoken_instruction" if r.get("spoken") else "conversation"
        return
    if ds.kind == "text":
        texts = [r[ds.text_field] for r in rows if r.get(ds.text_field)]
        yield from ((s, "text") for s in text_samples(texts, encoder))
        return
    order = [r for r in rows if r["id"] in store]
    rng.shuffle(order)
    # shard by shard (in a random order), so that each code shard is read once per pass
    shards = sorted({store.shard_of(r["id"]) for r in order})
    rng.shuffle(shards)
    rank = {name: i for i, name in enumerate(shards)}
    order.sort(key=lambda r: rank[store.shard_of(r["id"])])

    def media(r: dict) -> CodesPart:
        codes = store.get(r["id"])
        bounds = ds.excerpt_bounds(r, codes.shape[1])
        return CodesPart(ds.modality, codes if bounds is None else excerpt(codes, bounds, rng)[0])

    items = ((r[ds.text_field], media(r)) for r in order if r.get(ds.text_field))
    if ds.kind == "pair":
        pairs = pair_samples(items, encoder, rng, ds.x2text_prob, ds.cfg_drop)
        yield from ((s, f"{ds.modality}_{d}") for s, d in pairs)
    else:
        yield from ((s, "document") for s in interleaved_samples(items, encoder, rng, tuple(ds.per_document)))


EXAMPLE = """anygpt blocks --config blocks.json --out data/tiny-blocks
anygpt blocks --config blocks.json --out data/tiny-blocks --check
anygpt blocks --config blocks.json --out blocks/part-3 --part 3 --parts 8

The config format (JSON) is in the docstring of anygpt.data.blocks_config (python3 -m pydoc
anygpt.data.blocks_config) and docs/sequences.md. The summary and the full report (index.json,
key 'report') give samples per dataset and direction, blocks, configured and realised shares,
packing efficiency and samples/s.
"""


def build_parser():
    from anygpt import cli_flags

    p = cli_flags.parser("anygpt blocks", "Build packed, balanced training blocks.", EXAMPLE)
    p.add_argument("--config", type=Path, required=True, metavar="FILE", help="the blocks config (JSON)")
    cli_flags.add_out(p, "output folder of block shards (created; a killed build is simply run again)")
    cli_flags.add_parts(p, "every dataset's manifest (each part needs text_tokenizer.path in the config)")
    p.add_argument("--check", action="store_true",
                   help="do not build: decode the blocks in --out back and check media codes and loss masks "
                        "against the sources (writes check.json)")
    p.add_argument("--check-limit", type=cli_flags.positive_int, default=None, metavar="N",
                   help="with --check: the first N blocks only")
    cli_flags.add_no_progress(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from anygpt.data.check_blocks import check_blocks, format_check
    a = build_parser().parse_args(argv)
    cfg = BlocksConfig.from_json(a.config)
    if a.check:
        rep = check_blocks(cfg, a.out, max_blocks=a.check_limit)
        print(format_check(rep))
        if not rep["ok"]:
            raise AnyGPTError(f"{a.out / 'check.json'}: the blocks do not match their sources (see the table above)")
        return 0
    report = build_blocks(cfg, a.out, part=a.part, parts=a.parts, progress=not a.no_progress)
    print(format_report(report))
    return 0


def blocks_inputs(cfg: BlocksConfig) -> dict[str, str]:
    """The folders a build reads, which its --out must stay apart from."""
    inputs = {}
    for ds in cfg.datasets:
        inputs[f"dataset {ds.name!r}'s corpus"] = ds.corpus
        if ds.codes:
            inputs[f"dataset {ds.name!r}'s codes"] = ds.codes
    if cfg.text_tokenizer.get("path"):
        inputs["the text tokenizer's folder"] = cfg.text_tokenizer["path"]
    return inputs


def dataset_modality(ds: DatasetConfig) -> str:
    """What a dataset counts as in modality shares: its media modality, else 'text' or 'chat'."""
    return ds.modality if ds.kind in ("pair", "interleaved") else ds.kind


def normalised_shares(shares: dict[str, float]) -> dict[str, float]:
    total = sum(shares.values())
    return {d: s / total for d, s in shares.items()} if total else dict(shares)


def by_modality(shares: dict[str, float], modality: dict[str, str]) -> dict[str, float]:
    """Per-dataset shares summed per modality (datasets without an entry count as themselves)."""
    out: dict[str, float] = {}
    for d, s in shares.items():
        out[modality.get(d, d)] = out.get(modality.get(d, d), 0.0) + s
    return out


def format_report(r: dict) -> str:
    """The build summary: per dataset samples (by direction/kind), blocks, repeats, configured
    and realised token shares, packing efficiency; then per modality; then throughput."""
    target = r.get("target_shares") or {}
    eff = r.get("packing_efficiency_per_dataset", {})
    lines = [f"{'dataset':<18} {'samples':>8} {'blocks':>7} {'repeats':>8} {'target':>7} {'share':>7} {'packed':>7}"]
    for d, c in r["samples"].items():
        t = f"{target[d]:.3f}" if d in target else "-"
        lines.append(f"{d:<18} {sum(c.values()):>8} {r['blocks'][d]:>7} {r['repeats'].get(d, 0):>8.2f} {t:>7} "
                     f"{r['realised_shares'][d]:>7.3f} {eff.get(d, 0.0):>7.4f}   "
                     + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
    if "realised_modality_shares" in r:
        tm = r.get("target_modality_shares") or {}
        lines.append("modality shares (target -> realised): " + ", ".join(
            f"{m} {tm[m]:.3f} -> {v:.3f}" if m in tm else f"{m} {v:.3f}"
            for m, v in r["realised_modality_shares"].items()))
    lines.append(f"packing efficiency {r['packing_efficiency']:.4f}; {r['samples_per_second']:.0f} samples/s "
                 f"({r['seconds']:.1f} s); {r['split_samples']} samples longer than a block; "
                 f"{sum(r.get('topped_up_samples', {}).values())} samples of one more pass top up the last blocks")
    return "\n".join(lines)
