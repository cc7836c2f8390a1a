"""Two LMs trained on different text tokenizers, compared on the same held-out data.

    python benchmarks/compare_bases.py \\
        --model tiny=runs/tiny-30min:data/tiny-seq/blocks-val \\
        --model smollm2-lora=runs/smol-lora/export:data/smol-seq/blocks-pretrain-val

Each model is scored on its own held-out blocks (the same items, tokenized with its own text
tokenizer): per dataset, the cross-entropy on media-code positions in nats per code (the codes
are the same for both, so this compares directly) and on text positions in nats per character
of the decoded text (text tokens differ in length between tokenizers). Lower is better.

    python benchmarks/compare_bases.py --smoke     # two random tiny models on made-up blocks (seconds)
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F


def score(model_dir: str, blocks_dir: str, per_dataset: int, threads: int) -> dict[str, dict[str, float]]:
    from anygpt.lm.checkpoint import load_lm
    from anygpt.train.lm_data import BlockSource, validation_blocks

    torch.set_num_threads(threads)
    lm, tok, layout, _ = load_lm(model_dir)
    lm.eval()
    code_ranges = [(r.code_offset, r.code_end) for r in layout.ranges.values()]
    out: dict[str, dict[str, float]] = {}
    val = validation_blocks([BlockSource.parse(blocks_dir)], per_dataset, lm.get_input_embeddings().weight.shape[0])
    for name, blocks in val.items():
        sums = {"code_nats": 0.0, "codes": 0, "text_nats": 0.0, "chars": 0}
        for ids, labels in blocks:
            x = torch.from_numpy(ids.astype(np.int64))[None]
            y = torch.from_numpy(labels.astype(np.int64))
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                logits = lm(input_ids=x).logits[0, :-1].float()
            target = y[1:]
            ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
            keep = target != -100
            is_code = torch.zeros_like(keep)
            for lo, hi in code_ranges:
                is_code |= (target >= lo) & (target < hi)
            text = keep & ~is_code
            sums["code_nats"] += float(ce[keep & is_code].sum())
            sums["codes"] += int((keep & is_code).sum())
            sums["text_nats"] += float(ce[text].sum())
            sums["chars"] += len(tok.decode(target[text].tolist()))
        out[name] = {"nats_per_code": sums["code_nats"] / max(1, sums["codes"]),
                     "nats_per_char": sums["text_nats"] / max(1, sums["chars"])}
    return out


def smoke_inputs(root) -> list[str]:
    """Two random tiny models (seeds 0 and 1, the same BPE) and one folder of made-up blocks
    (random text and image-code ids, two datasets) -> the two --model specs."""
    from pathlib import Path

    from anygpt.data.packing import Block
    from anygpt.data.shards import ShardWriter
    from anygpt.lm.checkpoint import ANYGPT_CONFIG, FolderConfig
    from anygpt.lm.tiny import random_tiny
    from anygpt.model import AnyGPT

    root = Path(root)
    specs = []
    for seed in (0, 1):
        model = AnyGPT(*random_tiny(seed=seed))
        model.save_pretrained(root / f"model{seed}")
        specs.append(f"random{seed}={root / f'model{seed}'}:{root / 'blocks'}")
    image = model.layout["image"]
    rng = np.random.default_rng(0)
    writer = ShardWriter(root / "blocks", 64, ["text", "image"], blocks_per_shard=4)
    for name in ("text", "image"):
        for _ in range(2):
            ids = rng.integers(3, 400, size=64)
            if name == "image":
                ids[10:43] = [image.start_id, *rng.integers(image.code_offset, image.code_end, size=32)]
            writer.add(Block(ids.astype(np.int32), ids.astype(np.int32), [0], 64), name)
    writer.close()
    model.tokenizer.save_pretrained(root / "blocks")  # a block folder names its tokenizer and layout
    (root / "blocks" / ANYGPT_CONFIG).write_text(json.dumps(FolderConfig(model.layout.specs, "MMGPT", {}, released=False).to_json()))
    return specs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", metavar="NAME=MODEL_DIR:BLOCKS_DIR", help="required, once per model")
    p.add_argument("--per-dataset", type=int, default=4, help="held-out blocks per dataset (default: 4)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="two random tiny models on made-up blocks: checks the script runs")
    a = p.parse_args(argv)
    if a.smoke:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="compare-bases-") as tmp:
            return main(sum((["--model", s] for s in smoke_inputs(tmp)), ["--per-dataset", "2"]))
    if not a.model:
        p.error("--model is required (or --smoke)")
    results = {}
    for spec in a.model:
        name, _, rest = spec.partition("=")
        model_dir, _, blocks_dir = rest.rpartition(":")
        results[name] = score(model_dir, blocks_dir, a.per_dataset, a.threads)
    datasets = sorted({d for r in results.values() for d in r})
    print(f"{'dataset':<14} " + " ".join(f"{n + ' code':>18} {n + ' char':>18}" for n in results))
    for d in datasets:
        cells = []
        for n, r in results.items():
            v = r.get(d, {})
            cells.append(f"{v.get('nats_per_code', float('nan')):>18.3f} {v.get('nats_per_char', float('nan')):>18.3f}")
        print(f"{d:<14} " + " ".join(cells))


if __name__ == "__main__":
    main()
