"""`anygpt instruct write` (stage 1) and `anygpt instruct realise` (stage 2)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from anygpt import cli_flags
from anygpt.errors import ManifestError, UsageError
from anygpt.files import append_jsonl, check_output_dir, check_output_file, write_json
from anygpt.manifest import iter_jsonl, read_manifest

WRITE_EXAMPLE = """anygpt instruct write --corpus data/tiny --n 5000 --out-file data/tiny-chat/scripts.jsonl
anygpt instruct write --writer openai --base-url http://127.0.0.1:8000/v1 --endpoint-model my-model \\
    --topics topics.txt --n 200 --out-file data/llm-chat/scripts.jsonl
"""
REALISE_EXAMPLE = """anygpt instruct realise --scripts data/tiny-chat/scripts.jsonl --corpus data/tiny \\
    --codes image=data/tiny-codes/images --codes music=data/tiny-codes/music \\
    --speech-tokenizer compact --out data/tiny-chat --excerpt music=2,5
"""


def _manifest(corpus: Path, name: str, split: str | None = "train") -> list[dict]:
    """The records of corpus/name/manifest.jsonl in `split` (comma-separated splits allowed;
    None: all); none if the corpus lacks it."""
    path = corpus / name / "manifest.jsonl"
    if not path.exists():
        return []
    return read_manifest(path, splits=split.split(",") if split else None)


def read_scripts(path: Path) -> list:
    """Stage-1 scripts (JSONL); a bad line raises ManifestError naming file and line."""
    from anygpt.data.instruct.script import Script

    scripts = []
    for n, record in iter_jsonl(path):
        try:
            scripts.append(Script.from_json(record))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{n}: not a conversation script ({type(e).__name__}: {e})") from None
    return scripts


def write(a) -> int:
    from anygpt.data.instruct.offline_writer import OfflineWriter, script_stats
    from anygpt.data.instruct.openai_writer import OpenAIWriter
    from anygpt.files import atomic_path

    t0 = time.perf_counter()
    if a.writer == "offline":
        corpus = Path(a.corpus)
        if not any((corpus / name / "manifest.jsonl").is_file() for name in ("images", "music", "text")):
            raise ManifestError(f"{corpus}: --corpus has no images/, music/ or text/ manifest.jsonl; build the corpus "
                                f"first (anygpt data build --preset micro --out {corpus})")
        sentences = [r["text"] for r in _manifest(corpus, "text", a.split) if r.get("kind", "sentence") == "sentence"]
        writer = OfflineWriter(_manifest(corpus, "images", a.split), _manifest(corpus, "music", a.split), sentences,
                               seed=a.seed, speech=not a.no_speech)
        scripts, errors = writer.write(a.n), []
    else:
        topics = [t.strip() for t in Path(a.topics).read_text(encoding="utf-8").splitlines() if t.strip()]
        if not topics:
            raise ManifestError(f"{a.topics}: no topics (one topic or scenario per line)")
        scripts, errors = OpenAIWriter(a.base_url, a.endpoint_model, a.api_key).write(topics, a.n)
    seconds = time.perf_counter() - t0
    out = Path(a.out_file)
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in scripts), encoding="utf-8")
    stats = {"writer": a.writer, "seed": a.seed, "rejected": len(errors), "seconds": round(seconds, 3),
             "conversations_per_second": round(len(scripts) / seconds, 1) if seconds else 0.0, **script_stats(scripts)}
    write_json(stats_path(out), stats)
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
    from anygpt.layout import TokenLayout
    from anygpt.modalities import load_tokenizer, modality_names
    from anygpt.token_spec import TokenSpec

    scripts = read_scripts(a.scripts)  # a bad scripts file fails before any model loads
    codes = cli_flags.key_values(a.codes, "--codes")
    unknown = set(codes) - set(modality_names())
    if unknown:
        raise UsageError(f"--codes {sorted(unknown)[0]}=...: not a modality; choose from {', '.join(modality_names())}")
    stores = {modality: CodesStore(Path(path)) for modality, path in codes.items()}
    speech_tok = load_tokenizer("speech", a.speech_tokenizer) if a.speech_tokenizer else None
    specs = {m: TokenSpec.from_dict(s.meta["token_spec"]) for m, s in stores.items()}
    if speech_tok is not None:
        specs["speech"] = speech_tok.token_spec
    layout = TokenLayout.plan(0, [specs[m] for m in modality_names() if m in specs])  # text form only
    corpus = Path(a.corpus)
    manifests = {m: _manifest(corpus, "images" if m == "image" else m, None) for m in stores}  # scripts name ids of any split
    indexes = {m: CaptionIndex(rows) for m, rows in manifests.items() if rows}
    durations = {m: {r["id"]: r.get("duration") for r in manifests.get(m, [])} for m in a.excerpt}
    t0 = time.perf_counter()
    counts = Realiser(layout, stores, indexes=indexes, speech_tokenizer=speech_tok, cache_dir=Path(a.out) / "tts-cache",
                      excerpt_seconds=a.excerpt, durations=durations).run(scripts, a.out, progress=not a.no_progress)
    seconds = time.perf_counter() - t0
    run = {**counts, "scripts": len(scripts), "seconds": round(seconds, 3), "excerpt_seconds": a.excerpt,
           "conversations_per_second": round((counts["written"] + counts["failed"]) / seconds, 3) if seconds else 0.0}
    append_jsonl(Path(a.out) / "runs.jsonl", run)
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


def build_parser():
    p = cli_flags.parser("anygpt instruct", "Any-to-any conversations, two stages.", WRITE_EXAMPLE + REALISE_EXAMPLE)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{write,realise}", parser_class=cli_flags.Parser)
    w = sub.add_parser("write", help="stage 1: conversation scripts with media descriptions",
                       description="Stage 1: conversation scripts in which media appear as descriptions.",
                       epilog=cli_flags.example_text(WRITE_EXAMPLE))
    w.add_argument("--writer", choices=["offline", "openai"], default="offline",
                   help="offline: scenario grammars over the corpus (default); openai: any OpenAI-compatible endpoint")
    cli_flags.add_corpus(w, "offline writer: the corpus root (anygpt data build; default: data/tiny)",
                         default=Path("data/tiny"))
    w.add_argument("--no-speech", action="store_true", help="offline writer: no speech scenarios")
    w.add_argument("--split", default="train",
                   help="offline writer: corpus split(s) the media and sentences come from, comma-separated "
                        "(default: train; held-out conversations: test or val)")
    w.add_argument("--base-url", help="openai writer: endpoint base URL, e.g. http://127.0.0.1:8000/v1")
    w.add_argument("--endpoint-model", metavar="NAME", help="openai writer: the endpoint's model name")
    cli_flags.old_spelling(w, "--model", "--endpoint-model", "endpoint_model")
    w.add_argument("--api-key", help="openai writer: the endpoint's API key, if it needs one")
    w.add_argument("--topics", type=Path, metavar="FILE", help="openai writer: a text file, one topic or scenario per line")
    w.add_argument("--n", type=cli_flags.positive_int, default=1000, metavar="N",
                   help="conversations to write (default: 1000)")
    cli_flags.add_seed(w)
    cli_flags.add_out_file(w, "the scripts file (JSONL; its statistics go beside it as NAME.stats.json)", old=("--out",))
    r = sub.add_parser("realise", help="stage 2: descriptions -> media codes",
                       description="Stage 2: each media description becomes codes (corpus items, TTS speech).",
                       epilog=cli_flags.example_text(REALISE_EXAMPLE))
    r.add_argument("--scripts", type=Path, required=True, metavar="FILE", help="the scripts of `anygpt instruct write`")
    cli_flags.add_corpus(r, "the corpus root the scripts refer to (default: data/tiny)", default=Path("data/tiny"))
    r.add_argument("--codes", action="append", default=[], metavar="MODALITY=DIR",
                   help="code shards of a corpus (anygpt tokenize), repeatable")
    r.add_argument("--speech-tokenizer", metavar="NAME",
                   help="registered speech tokenizer name (compact, released; needed for speech elements)")
    r.add_argument("--excerpt", action="append", default=[], type=_excerpt_arg, metavar="MODALITY=MIN,MAX",
                   help="cut each item of MODALITY (music) to a random excerpt of MIN-MAX seconds (the clip's "
                        "manifest duration gives its frame rate); default: whole clips")
    cli_flags.add_out(r, "output folder: conversations.jsonl, failed.jsonl, runs.jsonl, meta.json (rerun to resume)")
    cli_flags.add_no_progress(r)
    cli_flags.add_threads(r)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.cmd == "write":
        if a.out_file is None:
            raise UsageError("--out-file is required (see anygpt instruct write --help)")
        if a.writer == "openai" and not (a.base_url and a.endpoint_model and a.topics):
            raise UsageError("--writer openai needs --base-url, --endpoint-model and --topics")
        check_output_file(a.out_file)
        return write(a)
    a.excerpt = dict(a.excerpt)
    check_output_dir(a.out)
    cli_flags.set_threads(a.threads)
    return realise(a)
