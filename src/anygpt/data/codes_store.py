"""Tokenise once: a corpus's media -> codes, in sharded files a training-data builder reads.

Folder layout (one per corpus and tokenizer):
    codes-NNNNN.npz   codes int32 [sum of K*T] (each item [K, T] flattened row-major),
                      offsets int64 [n+1], frames int64 [n], ids (str) [n]
    done.jsonl        one line per finished shard: {"shard", "ids"}; written after the shard file
    failed.jsonl      one line per item that could not be encoded in its latest attempt:
                      {"id", "path", "reason"}
    runs.jsonl        one line per run: counts, seconds, items/s, part/parts (throughput records)
    meta.json         what the folder holds: modality, tokenizer, its options, token spec

Re-running skips items in finished shards and tries failed items again; a killed run loses only
the shard in flight (and a done.jsonl line cut by the kill costs only that shard). A folder
holding codes of another kind (modality, tokenizer or token spec) is refused. For several
machines, `part`/`parts` take every parts-th chunk of items.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from anygpt.errors import AnyGPTError, OutputError
from anygpt.files import append_jsonl, atomic_path, safe_join, write_json, write_jsonl
from anygpt.manifest import file_mismatch, read_json, read_jsonl, read_manifest
from anygpt.modalities import load_tokenizer
from anygpt.workers import process_pool

log = logging.getLogger("anygpt.data")

_worker_tok = None


def _init_worker(modality: str, loader: str, kwargs: dict) -> None:
    global _worker_tok
    torch.set_num_threads(1)
    _worker_tok = load_tokenizer(modality, loader, **kwargs)


def _encode_chunk(items: list[tuple[str, str, dict]]) -> tuple[list[str], list[np.ndarray], list[dict]]:
    """Worker: [(id, absolute path, manifest record)] -> (ids, codes [K, T] arrays, failures)."""
    ids, codes, failed = [], [], []
    for item_id, path, record in items:
        try:
            problem = file_mismatch(path, record) if Path(path).is_file() else None
            if problem:
                raise AnyGPTError(problem)
            c = _worker_tok.encode_file(path)
            ids.append(item_id)
            codes.append(c.numpy().astype(np.int32))
        except Exception as e:  # noqa: BLE001 - a corrupt item is logged and counted, never fatal
            failed.append({"id": item_id, "path": path, "reason": f"{type(e).__name__}: {e}"})
    return ids, codes, failed


def _read_lines(path: Path) -> list[dict]:
    """Records of one of our logs (a line cut by a kill is skipped)."""
    return read_jsonl(path, lenient=True)


def folder_meta(modality: str, loader: str, kwargs: dict, tok) -> dict:
    """What a codes folder records about its contents (meta.json)."""
    return {"modality": modality, "tokenizer": loader, "tokenizer_kwargs": kwargs,
            "token_spec": tok.token_spec.to_dict(), "num_codebooks": len(tok.lm_codebooks)}


def _claim_folder(out: Path, meta: dict) -> None:
    """Write meta.json, or check that the folder's codes are of the same kind as this run's."""
    path = out / "meta.json"
    if path.exists() and _read_lines(out / "done.jsonl"):
        held = read_json(path, what="codes folder meta")
        keys = ("modality", "tokenizer", "tokenizer_kwargs", "token_spec")
        if {k: held.get(k) for k in keys} != {k: meta[k] for k in keys}:
            raise OutputError(
                f"{out}: holds {held.get('modality')} codes of tokenizer {held.get('tokenizer')!r} "
                f"{held.get('tokenizer_kwargs') or ''}; this run writes {meta['modality']} codes of tokenizer "
                f"{meta['tokenizer']!r} {meta['tokenizer_kwargs'] or ''}; give another --out")
        return
    write_json(path, meta)


def tokenize_corpus(corpus_dir: str | Path, modality: str, loader: str, out_dir: str | Path, *,
                    tokenizer_kwargs: dict | None = None, workers: int = 2, items_per_shard: int = 256,
                    part: int = 0, parts: int = 1, progress: bool = True) -> dict:
    """Encode every item of corpus_dir/manifest.jsonl; return counts {encoded, failed, skipped}
    (skipped: already encoded by an earlier run). workers: processes (each loads the tokenizer
    once); 0 encodes in this process. The run's counts, seconds and items/s are appended to
    out_dir/runs.jsonl."""
    t0 = time.perf_counter()
    corpus_dir, out = Path(corpus_dir), Path(out_dir)
    if items_per_shard < 1 or workers < 0 or not 0 <= part < parts:
        raise AnyGPTError(f"items_per_shard {items_per_shard}, workers {workers}, part {part} of {parts}: "
                          "need items_per_shard >= 1, workers >= 0 and 0 <= part < parts")
    manifest = corpus_dir / "manifest.jsonl"
    if not manifest.exists():
        raise AnyGPTError(f"{manifest}: no manifest; build the corpus first (anygpt data build)")
    records = read_manifest(manifest, require=("id", "path"))
    items = [(r["id"], str(safe_join(corpus_dir, r["path"], what=f"{manifest}: item {r['id']!r} path")), r)
             for r in records]
    kwargs = dict(tokenizer_kwargs or {})
    tok = load_tokenizer(modality, loader, **kwargs)
    meta = folder_meta(modality, loader, kwargs, tok)
    out.mkdir(parents=True, exist_ok=True)
    _claim_folder(out, meta)

    done_ids = {i for entry in _read_lines(out / "done.jsonl") for i in entry.get("ids", [])}
    todo = [it for it in items if it[0] not in done_ids]
    chunks = [todo[i:i + items_per_shard] for i in range(0, len(todo), items_per_shard)][part::parts]
    retried = {it[0] for chunk in chunks for it in chunk}
    # failed.jsonl keeps the latest attempt per item: this run's items are tried again
    write_jsonl(out / "failed.jsonl", [f for f in _read_lines(out / "failed.jsonl") if f.get("id") not in retried])
    next_shard = len(_read_lines(out / "done.jsonl"))
    counts = {"encoded": 0, "failed": 0, "skipped": len(records) - len(todo)}
    first_failure = None
    bar = tqdm(total=sum(map(len, chunks)), desc=f"tokenize {modality}", unit="item", disable=not progress)
    if workers > 0:
        pool = process_pool(workers, initializer=_init_worker, initargs=(modality, loader, kwargs))
        results = pool.map(_encode_chunk, chunks)
    else:  # in this process (tokenizers registered at run time, debugging)
        global _worker_tok
        pool, _worker_tok = None, tok
        results = map(_encode_chunk, chunks)
    try:
        for ids, codes, failed in results:
            if ids:
                name = f"codes-{part:03d}-{next_shard:05d}.npz"
                next_shard += 1
                _write_shard(out / name, ids, codes)
                append_jsonl(out / "done.jsonl", {"shard": name, "ids": ids}, sync=True)
            for item in failed:
                log.warning("tokenize: skipped %s (%s)", item["path"], item["reason"])
                append_jsonl(out / "failed.jsonl", item)
                first_failure = first_failure or item
            counts["encoded"] += len(ids)
            counts["failed"] += len(failed)
            bar.update(len(ids) + len(failed))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    seconds = time.perf_counter() - t0
    run = {**counts, "part": part, "parts": parts, "workers": workers, "seconds": round(seconds, 3),
           "items_per_second": round((counts["encoded"] + counts["failed"]) / seconds, 3) if seconds else 0.0}
    append_jsonl(out / "runs.jsonl", run)
    if counts["failed"] and not counts["encoded"] and not done_ids:
        raise AnyGPTError(f"{corpus_dir}: none of {counts['failed']} items could be encoded as {modality} "
                          f"(first: {first_failure['id']}: {first_failure['reason'][:200]}); is --modality right? "
                          f"see {out / 'failed.jsonl'}")
    return counts


def _write_shard(path: Path, ids: list[str], codes: list[np.ndarray]) -> None:
    flat = np.concatenate([c.reshape(-1) for c in codes]) if codes else np.zeros(0, np.int32)
    offsets = np.concatenate([[0], np.cumsum([c.size for c in codes])]).astype(np.int64)
    frames = np.asarray([c.shape[1] for c in codes], dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, codes=flat, offsets=offsets, frames=frames, ids=np.asarray(ids))


@dataclass
class CodesStore:
    """Read access to a tokenised corpus: codes of an item as LongTensor [K, T]."""

    folder: Path
    only: set[str] | None = None  # index just these ids (one part of a large corpus)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not (self.folder / "meta.json").exists():
            raise AnyGPTError(f"{self.folder}: no meta.json; run `anygpt tokenize` for this corpus first")
        self.meta = read_json(self.folder / "meta.json", what="codes folder meta")
        self.k = self.meta["num_codebooks"]
        self._where: dict[str, str] = {}
        for entry in _read_lines(self.folder / "done.jsonl"):
            for i in entry["ids"]:
                if self.only is None or i in self.only:
                    self._where[i] = entry["shard"]
        self._cache: tuple[str, dict] | None = None

    def shard_of(self, item_id: str) -> str:
        """The shard file an item is in (KeyError if it is not encoded)."""
        return self._where[item_id]

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._where

    def _shard(self, name: str) -> dict:
        if self._cache is None or self._cache[0] != name:  # one shard in memory at a time
            with np.load(self.folder / name) as z:
                data = {k: z[k] for k in z.files}
            data["row"] = {str(i): n for n, i in enumerate(data["ids"])}
            self._cache = (name, data)
        return self._cache[1]

    def get(self, item_id: str) -> torch.Tensor:
        if item_id not in self._where:
            raise KeyError(f"{item_id} is not in {self.folder} (not encoded, or failed: see failed.jsonl)")
        z = self._shard(self._where[item_id])
        n = z["row"][item_id]
        flat = z["codes"][z["offsets"][n]:z["offsets"][n + 1]]
        return torch.from_numpy(flat.reshape(self.k, int(z["frames"][n])).astype(np.int64))

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(id, codes) shard by shard (memory bounded by one shard)."""
        for entry in _read_lines(self.folder / "done.jsonl"):
            for i in entry["ids"]:
                if i in self._where:
                    yield i, self.get(i)


EXAMPLE = """anygpt tokenize --corpus data/tiny/images --modality image --tokenizer compact --out data/tiny-codes/images
anygpt tokenize --corpus data/big/speech --modality speech --out codes/speech --part 3 --parts 8

Re-running skips finished shards and retries failed items; --part/--parts split the work
between machines (each part its own --out).
"""


def build_parser():
    from anygpt import cli_flags

    p = cli_flags.parser("anygpt tokenize", "Encode a corpus's media into codes, once.", EXAMPLE)
    cli_flags.add_corpus(p, "one modality's corpus folder, with manifest.jsonl (e.g. data/tiny/music)", required=True)
    p.add_argument("--modality", required=True, help="image, speech, music, ...")
    cli_flags.add_tokenizer(p, "compact", "registered tokenizer name (compact, released, ...; default: compact)")
    cli_flags.add_out(p, "output folder of code shards (created; rerun with the same --out to resume)")
    cli_flags.add_workers(p)
    p.add_argument("--items-per-shard", type=cli_flags.positive_int, default=256, metavar="N",
                   help="items per code shard (default: 256)")
    cli_flags.add_parts(p, "the manifest's items")
    cli_flags.add_no_progress(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from anygpt import cli_flags

    from anygpt.files import check_output_dir

    a = build_parser().parse_args(argv)
    kwargs = cli_flags.key_values(a.tokenizer_option, "--tokenizer-option")
    check_output_dir(a.out)
    counts = tokenize_corpus(a.corpus, a.modality, a.tokenizer, a.out, tokenizer_kwargs=kwargs,
                             workers=cli_flags.workers_or_cores(a.workers), items_per_shard=a.items_per_shard,
                             part=a.part, parts=a.parts, progress=not a.no_progress)
    run = [r for r in _read_lines(Path(a.out) / "runs.jsonl") if r.get("part") == a.part][-1]
    print(f"encoded {counts['encoded']}, failed {counts['failed']} (see failed.jsonl), skipped {counts['skipped']}; "
          f"{run['seconds']:.1f} s, {run['items_per_second']:.2f} items/s")
    return 0
