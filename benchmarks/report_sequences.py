"""Training-sequence figures on the tiny corpus (issue 8's "done when"), as markdown tables.

Reads only what the commands write (code shards' runs.jsonl, the writer's stats, the
realiser's runs.jsonl, the blocks' index.json and check.json); computes nothing itself but
sums and ratios. The commands, from the repository root, one thread each (OMP_NUM_THREADS=1):

    python benchmarks/report_sequences.py --write-configs            # data/tiny-seq/{pretrain,chat}.json
    anygpt tokenize --corpus data/tiny/images --modality image --tokenizer compact --out data/tiny-seq/codes/images --workers 1
    anygpt tokenize --corpus data/tiny/music  --modality music --tokenizer compact --out data/tiny-seq/codes/music  --workers 1
    anygpt tokenize --corpus data/tiny/speech --modality speech --tokenizer compact --out data/tiny-seq/codes/speech --workers 1
    anygpt instruct write --corpus data/tiny --n 5000 --seed 0 --out data/tiny-seq/chat/scripts.jsonl
    anygpt instruct realise --scripts data/tiny-seq/chat/scripts.jsonl --corpus data/tiny \\
        --codes image=data/tiny-seq/codes/images --codes music=data/tiny-seq/codes/music \\
        --speech-tokenizer compact --out data/tiny-seq/chat --excerpt music=2,5
    anygpt blocks --config data/tiny-seq/pretrain.json --out data/tiny-seq/blocks-pretrain
    anygpt blocks --config data/tiny-seq/pretrain.json --out data/tiny-seq/blocks-pretrain --check
    anygpt blocks --config data/tiny-seq/chat.json --out data/tiny-seq/blocks-chat
    anygpt blocks --config data/tiny-seq/chat.json --out data/tiny-seq/blocks-chat --check
    python benchmarks/report_sequences.py                            # the tables

`--no-speech` writes configs without the speech dataset (and the writer's --no-speech is
then needed too) for when no speech tokenizer is available.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anygpt.pipeline import BLOCK_LEN, chat_config as pipeline_chat_config, pretrain_config  # noqa: F401

ROOT = Path("data/tiny-seq")
CORPUS = Path("data/tiny")


def chat_config(root: Path) -> dict:
    return pipeline_chat_config(root, root / "chat")


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def tokenize_section(root: Path) -> str:
    rows = []
    for folder in sorted((root / "codes").glob("*")):
        runs = [r for r in _lines(folder / "runs.jsonl") if r["encoded"] + r["failed"]]  # not the no-op re-runs
        if not runs:
            continue
        items = sum(len(e["ids"]) for e in _lines(folder / "done.jsonl"))
        encoded = sum(r["encoded"] + r["failed"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        meta = _json(folder / "meta.json") or {}
        spec = meta.get("token_spec", {})
        rows.append([folder.name, f"{meta.get('modality')}/{meta.get('tokenizer')}", items,
                     len(_lines(folder / "failed.jsonl")), f"{spec.get('num_codebooks')} x {spec.get('codebook_size')}",
                     f"{seconds:.1f}", f"{encoded / seconds:.1f}" if seconds else "-"])
    return "### Tokenise once (`anygpt tokenize`)\n\n" + _table(
        ["corpus", "modality/tokenizer", "items", "failed", "LM codes", "seconds", "items/s"], rows)


def instruct_section(root: Path) -> str:
    st = _json(root / "chat" / "scripts.stats.json")
    if st is None:
        return "### Conversations\n\n(no data/tiny-seq/chat/scripts.stats.json: run `anygpt instruct write`)"
    runs = [r for r in _lines(root / "chat" / "runs.jsonl") if r["written"] + r["failed"]]
    written = len(_lines(root / "chat" / "conversations.jsonl"))
    failed = len(_lines(root / "chat" / "failed.jsonl"))
    seconds = sum(r["seconds"] for r in runs)
    done = sum(r["written"] + r["failed"] for r in runs)
    excerpts = (runs[-1].get("excerpt_seconds") or {}) if runs else {}
    rows = [["stage 1 (offline writer)", st["conversations"], f"{st['conversations_per_second']:.0f}"],
            ["stage 2 (realised)", f"{written} ({failed} failed)", f"{done / seconds:.2f}" if seconds else "-"]]
    out = ["### Conversations (`anygpt instruct write` / `realise`)", "",
           _table(["stage", "conversations", "conversations/s"], rows), "",
           f"spoken instructions {st['spoken_instruction']}, turns {st['turns']}; scenario uses (a conversation chains 1-3): "
           + ", ".join(f"{k} {v}" for k, v in st["scenarios"].items()),
           "media elements: " + ", ".join(f"{k} {v}" for k, v in st["media_elements"].items())
           + "".join(f"; {m} as excerpts of {lo:g}-{hi:g} s" for m, (lo, hi) in excerpts.items()), "",
           "Diversity of the offline writer (words, lower-cased, over all conversations):", "",
           _table(["distinct-1", "distinct-2", "distinct-3", "identical conversations",
                   "near-duplicates (3-gram Jaccard >= 0.8, 500 sampled)"],
                  [[f"{st['distinct_1']:.3f}", f"{st['distinct_2']:.3f}", f"{st['distinct_3']:.3f}",
                    f"{st['identical_share']:.2%}", f"{st['near_duplicate_share']:.2%}"]])]
    return "\n".join(out)


def blocks_section(root: Path, name: str) -> str:
    index = _json(root / name / "index.json")
    if index is None:
        return f"### {name}\n\n(not built)"
    r = index["report"]
    target = r.get("target_shares") or {}
    eff = r.get("packing_efficiency_per_dataset", {})
    rows = []
    for d, c in r["samples"].items():
        rows.append([d, ", ".join(f"{k} {v}" for k, v in sorted(c.items())), sum(c.values()),
                     index["blocks_per_dataset"][d], f"{r['repeats'].get(d, 0):.2f}",
                     f"{target[d]:.3f}" if d in target else "-", f"{r['realised_shares'][d]:.3f}",
                     f"{eff[d]:.4f}" if d in eff else "-"])
    total_blocks = sum(index["blocks_per_dataset"].values())
    rows.append(["**all**", "", sum(sum(c.values()) for c in r["samples"].values()), total_blocks, "", "", "",
                 f"**{r['packing_efficiency']:.4f}**"])
    out = [f"### `{name}` (`anygpt blocks`, block length {index['block_len']})", "",
           _table(["dataset", "samples by direction / kind", "samples", "blocks", "repeats", "target share",
                   "realised share", "non-pad share"], rows), ""]
    tm = r.get("target_modality_shares") or {}
    out.append("modality shares, target -> realised: " + ", ".join(
        f"{m} {tm[m]:.3f} -> {v:.3f}" if m in tm else f"{m} {v:.3f}" for m, v in r["realised_modality_shares"].items()))
    out.append(f"throughput {r['samples_per_second']:.0f} samples/s ({r['seconds']:.1f} s for the whole build, "
               f"text tokenizer included); {r['split_samples']} samples longer than a block")
    if r.get("topped_up_samples"):
        out.append("last blocks topped up with samples of one more pass: "
                   + ", ".join(f"{d} {n}" for d, n in r["topped_up_samples"].items()))
    excerpt = {d["name"]: d.get("excerpt_seconds") for d in _json(root / "pretrain.json")["datasets"]} \
        if name == "blocks-pretrain" and (root / "pretrain.json").exists() else {}
    if any(excerpt.values()):
        out.append("media excerpts (seconds, min-max): " + ", ".join(f"{d} {v[0]:g}-{v[1]:g}" for d, v in excerpt.items() if v))
    check = _json(root / name / "check.json")
    if check is None:
        out.append("decode-back check: not run (`anygpt blocks --config ... --out ... --check`)")
    else:
        parts = []
        for d, c in check["datasets"].items():
            s = f"{d}: {c['media_matched']}/{c['media_segments']} media segments equal their source codes"
            if c.get("media_excerpts"):
                s += f" ({c['media_excerpts']} of them frame-aligned excerpts: a contiguous run of the source's frames)"
            if "assistant_turns" in c:
                s += (f", assistant turn ends trained {c['turn_ends_trained']}/{c['assistant_turns']}, trained tokens in "
                      f"user turns {c['trained_in_user_turns']}, role markers {c['trained_role_markers']}, elsewhere "
                      f"{c['trained_outside_assistant']}, gaps {c['untrained_in_assistant_message']} "
                      f"({c['trained_tokens']} trained / {c['masked_tokens']} masked tokens)")
            parts.append(s)
        out.append(f"decode-back check of {check['blocks_checked']} blocks: **{'pass' if check['ok'] else 'FAIL'}**; "
                   + "; ".join(parts))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=ROOT, help="output folder of the commands (default data/tiny-seq)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--write-configs", action="store_true", help="write pretrain.json and chat.json into --root")
    p.add_argument("--no-speech", action="store_true", help="with --write-configs: no speech dataset")
    a = p.parse_args(argv)
    if a.write_configs:
        a.root.mkdir(parents=True, exist_ok=True)
        (a.root / "pretrain.json").write_text(json.dumps(pretrain_config(a.root, a.corpus, not a.no_speech), indent=1))
        (a.root / "chat.json").write_text(json.dumps(chat_config(a.root), indent=1))
        print(f"wrote {a.root / 'pretrain.json'} and {a.root / 'chat.json'}")
        return 0
    print("\n\n".join([tokenize_section(a.root), instruct_section(a.root), blocks_section(a.root, "blocks-pretrain"),
                       blocks_section(a.root, "blocks-chat")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
