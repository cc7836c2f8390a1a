"""`anygpt instruct write` (stage 1) and `anygpt instruct realise` (stage 2)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from anygpt.errors import AnyGPTError

EXAMPLE = """examples:
  anygpt instruct write --corpus data/tiny --n 5000 --out data/tiny-chat/scripts.jsonl
  anygpt instruct write --writer openai --base-url http://127.0.0.1:8000/v1 --model my-model \\
      --topics topics.txt --n 200 --out data/llm-chat/scripts.jsonl
  anygpt instruct realise --scripts data/tiny-chat/scripts.jsonl --corpus data/tiny \\
      --codes image=data/tiny-codes/images --codes music=data/tiny-codes/music \\
      --speech-tokenizer tiny --out data/tiny-chat --excerpt music=2,5
"""


def _manifest(corpus: Path, name: str, split: str = "train") -> list[dict]:
    path = corpus / name / "manifest.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    return [r for r in rows if r.get("split") == split]


def write(a) -> int:
    from anygpt.data.instruct.offline_writer import OfflineWriter, script_stats
    from anygpt.data.instruct.openai_writer import OpenAIWriter
    from anygpt.files import atomic_path

    t0 = time.perf_counter()
    if a.writer == "offline":
        corpus = Path(a.corpus)
        sentences = [r["text"] for r in _manifest(corpus, "text") if r.get("kind", "sentence") == "sentence"]
        writer = OfflineWriter(_manifest(corpus, "images"), _manifest(corpus, "music"), sentences, seed=a.seed,
                               speech=not a.no_speech)
        scripts, errors = writer.write(a.n), []
    else:
        topics = [t.strip() for t in Path(a.topics).read_text(encoding="utf-8").splitlines() if t.strip()]
        scripts, errors = OpenAIWriter(a.base_url, a.model, a.api_key).write(topics, a.n)
    seconds = time.perf_counter() - t0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in scripts), encoding="utf-8")
    stats = {"writer": a.writer, "seed": a.seed, "rejected": len(errors), "seconds": round(seconds, 3),
             "conversations_per_second": round(len(scripts) / seconds, 1) if seconds else 0.0, **script_stats(scripts)}
    with atomic_path(stats_path(out)) as tmp:
        tmp.write_text(json.dumps(stats, indent=1))
    print(f"wrote {len(scripts)} conversations to {out} ({len(errors)} model answers rejected); "
          f"{stats['conversations_per_second']:.0f} conversations/s; stats in {stats_path(out)}")
    print("distinct-1/2/3: " + " / ".join(f"{stats[f'distinct_{n}']:.3f}" for n in (1, 2, 3))
          + f"; identical conversations: {stats['identical_share']:.2%}"
          + f"; near-duplicates (3-gram Jaccard >= 0.8, 500 sampled): {stats['near_duplicate_share']:.2%}")
    print("scenarios: " + ", ".join(f"{k}={v}" for k, v in stats["scenarios"].items())
          + "; media elements: " + ", ".join(f"{k}={v}" for k, v in stats["media_elements"].items()))
    return 0


def stats_path(scripts: Path) -> Path:
    """scripts.jsonl -> scripts.stats.json (what `instruct write` measured)."""
    return scripts.with_name(scripts.name.removesuffix(".jsonl") + ".stats.json")


def realise(a) -> int:
    from anygpt.data.codes_store import CodesStore
    from anygpt.data.instruct.realise import CaptionIndex, Realiser
    from anygpt.data.instruct.script import Script
    from anygpt.layout import TokenLayout
    from anygpt.modalities import load_tokenizer, modality_names
    from anygpt.modalities.base import TokenSpec

    stores = {}
    for kv in a.codes:
        modality, path = kv.split("=", 1)
        stores[modality] = CodesStore(Path(path))
    speech_tok = load_tokenizer("speech", a.speech_tokenizer) if a.speech_tokenizer else None
    specs = {m: TokenSpec.from_dict(s.meta["token_spec"]) for m, s in stores.items()}
    if speech_tok is not None:
        specs["speech"] = speech_tok.token_spec
    layout = TokenLayout.plan(0, [specs[m] for m in modality_names() if m in specs])  # text form only
    corpus = Path(a.corpus)
    manifests = {m: _manifest(corpus, "images" if m == "image" else m) for m in stores}
    indexes = {m: CaptionIndex(rows) for m, rows in manifests.items() if rows}
    durations = {m: {r["id"]: r.get("duration") for r in manifests.get(m, [])} for m in a.excerpt}
    scripts = [Script.from_json(json.loads(l)) for l in Path(a.scripts).read_text(encoding="utf-8").splitlines() if l.strip()]
    t0 = time.perf_counter()
    counts = Realiser(layout, stores, indexes=indexes, speech_tokenizer=speech_tok, cache_dir=Path(a.out) / "tts-cache",
                      excerpt_seconds=a.excerpt, durations=durations).run(scripts, a.out)
    seconds = time.perf_counter() - t0
    run = {**counts, "scripts": len(scripts), "seconds": round(seconds, 3), "excerpt_seconds": a.excerpt,
           "conversations_per_second": round((counts["written"] + counts["failed"]) / seconds, 3) if seconds else 0.0}
    with open(Path(a.out) / "runs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(run) + "\n")
    print(f"conversations: {counts['written']} written, {counts['skipped']} already done, {counts['failed']} failed "
          f"(see failed.jsonl); {seconds:.1f} s, {run['conversations_per_second']:.2f} conversations/s")
    return 0


def _excerpt_arg(value: str) -> tuple[str, tuple[float, float]]:
    """'music=2,5' -> ('music', (2.0, 5.0))."""
    try:
        modality, bounds = value.split("=", 1)
        lo, hi = (float(x) for x in bounds.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MODALITY=MIN,MAX in seconds (e.g. music=2,5), got {value!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"excerpt seconds must be 0 < MIN <= MAX, got {value!r}")
    return modality, (lo, hi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="anygpt instruct", description="Any-to-any conversations, two stages.",
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="stage 1: conversation scripts with media descriptions", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--writer", choices=["offline", "openai"], default="offline")
    w.add_argument("--corpus", default="data/tiny", help="offline writer: corpus folder (anygpt data build)")
    w.add_argument("--no-speech", action="store_true", help="offline writer: no speech scenarios")
    w.add_argument("--base-url", help="openai writer: endpoint base URL, e.g. http://127.0.0.1:8000/v1")
    w.add_argument("--model", help="openai writer: model name")
    w.add_argument("--api-key")
    w.add_argument("--topics", help="openai writer: a text file, one topic or scenario per line")
    w.add_argument("--n", type=int, default=1000)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--out", required=True)
    r = sub.add_parser("realise", help="stage 2: descriptions -> media codes", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--scripts", required=True)
    r.add_argument("--corpus", default="data/tiny")
    r.add_argument("--codes", action="append", default=[], metavar="MODALITY=DIR", help="code shards of a corpus")
    r.add_argument("--speech-tokenizer", help="registered speech tokenizer name (needed for speech elements)")
    r.add_argument("--excerpt", action="append", default=[], type=_excerpt_arg, metavar="MODALITY=MIN,MAX",
                   help="cut each item of MODALITY (music) to a random excerpt of MIN-MAX seconds (the clip's "
                        "manifest duration gives its frame rate); default: whole clips")
    r.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "realise":
        a.excerpt = dict(a.excerpt)
    if a.cmd == "write" and a.writer == "openai" and not (a.base_url and a.model and a.topics):
        p.error("--writer openai needs --base-url, --model and --topics")
    try:
        return write(a) if a.cmd == "write" else realise(a)
    except AnyGPTError as e:
        print(f"anygpt instruct: {e}")
        return 1
