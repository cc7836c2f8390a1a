"""Tokenise once: a corpus's media -> codes, in sharded files a training-data builder reads.

Folder layout (one per corpus and tokenizer):
    codes-NNNNN.npz   codes int32 [sum of K*T] (each item [K, T] flattened row-major),
                      offsets int64 [n+1], frames int64 [n], ids (str) [n]
    done.jsonl        one line per finished shard: {"shard", "ids"}; written after the shard file
    failed.jsonl      one line per item that could not be encoded: {"id", "path", "reason"}
    runs.jsonl        one line per run: counts, seconds, items/s, part/parts (throughput records)
    meta.json         modality, tokenizer, token spec, num_codebooks

Re-running skips items in finished shards and items already failed; a killed run loses only
the shard in flight. For several machines, `part`/`parts` take every parts-th chunk of items.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from anygpt.errors import AnyGPTError
from anygpt.files import atomic_path
from anygpt.modalities import load_tokenizer

log = logging.getLogger("anygpt.data")

_worker_tok = None


def _init_worker(modality: str, loader: str, kwargs: dict) -> None:
    global _worker_tok
    torch.set_num_threads(1)
    _worker_tok = load_tokenizer(modality, loader, **kwargs)


def _encode_chunk(items: list[tuple[str, str]]) -> tuple[list[str], list[np.ndarray], list[dict]]:
    """Worker: [(id, absolute path)] -> (ids, codes [K, T] arrays, failures)."""
    ids, codes, failed = [], [], []
    for item_id, path in items:
        try:
            c = _worker_tok.encode_file(path)
            ids.append(item_id)
            codes.append(c.numpy().astype(np.int32))
        except Exception as e:  # noqa: BLE001 - a corrupt item is logged and counted, never fatal
            failed.append({"id": item_id, "path": path, "reason": f"{type(e).__name__}: {e}"})
    return ids, codes, failed


def _read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


def tokenize_corpus(corpus_dir: str | Path, modality: str, loader: str, out_dir: str | Path, *,
                    tokenizer_kwargs: dict | None = None, workers: int = 2, items_per_shard: int = 256,
                    part: int = 0, parts: int = 1, progress: bool = True) -> dict:
    """Encode every item of corpus_dir/manifest.jsonl; return counts {encoded, failed, skipped}.
    workers: processes (each loads the tokenizer once); 0 encodes in this process.
    The run's counts, seconds and items/s are appended to out_dir/runs.jsonl."""
    t0 = time.perf_counter()
    corpus_dir, out = Path(corpus_dir), Path(out_dir)
    manifest = corpus_dir / "manifest.jsonl"
    if not manifest.exists():
        raise AnyGPTError(f"{manifest}: no manifest; build the corpus first (anygpt data build)")
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(tokenizer_kwargs or {})
    tok = load_tokenizer(modality, loader, **kwargs)
    meta = {"modality": modality, "tokenizer": loader, "tokenizer_kwargs": kwargs,
            "token_spec": tok.token_spec.to_dict(), "num_codebooks": len(tok.lm_codebooks)}
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False))

    records = [json.loads(l) for l in manifest.read_text(encoding="utf-8").splitlines() if l.strip()]
    done_ids = {i for entry in _read_lines(out / "done.jsonl") for i in entry["ids"]}
    failed_ids = {f["id"] for f in _read_lines(out / "failed.jsonl")}
    todo = [(r["id"], str(corpus_dir / r["path"])) for r in records
            if r["id"] not in done_ids and r["id"] not in failed_ids]
    chunks = [todo[i:i + items_per_shard] for i in range(0, len(todo), items_per_shard)][part::parts]
    next_shard = len(_read_lines(out / "done.jsonl"))
    counts = {"encoded": 0, "failed": 0, "skipped": len(records) - len(todo)}
    bar = tqdm(total=sum(map(len, chunks)), desc=f"tokenize {modality}", unit="item", disable=not progress)
    if workers > 0:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(modality, loader, kwargs))
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
                with open(out / "done.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"shard": name, "ids": ids}) + "\n")
            if failed:
                with open(out / "failed.jsonl", "a", encoding="utf-8") as f:
                    for item in failed:
                        log.warning("tokenize: skipped %s (%s)", item["path"], item["reason"])
                        f.write(json.dumps(item) + "\n")
            counts["encoded"] += len(ids)
            counts["failed"] += len(failed)
            bar.update(len(ids) + len(failed))
    finally:
        if pool is not None:
            pool.shutdown()
        bar.close()
    seconds = time.perf_counter() - t0
    run = {**counts, "part": part, "parts": parts, "workers": workers, "seconds": round(seconds, 3),
           "items_per_second": round((counts["encoded"] + counts["failed"]) / seconds, 3) if seconds else 0.0}
    with open(out / "runs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(run) + "\n")
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
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
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


EXAMPLE = """example:
  anygpt tokenize --corpus data/tiny/images --modality image --tokenizer tiny --out data/tiny-codes/images
  anygpt tokenize --corpus data/big/speech --modality speech --tokenizer tiny --out codes/speech --part 3 --parts 8

Re-running skips finished shards; --part/--parts split the work between machines.
"""


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="anygpt tokenize", description="Encode a corpus's media into codes, once.",
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus folder with manifest.jsonl (e.g. data/tiny/music)")
    p.add_argument("--modality", required=True, help="image, speech, music, ...")
    p.add_argument("--tokenizer", default="tiny", help="registered tokenizer name (tiny, released, ...)")
    p.add_argument("--tokenizer-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the tokenizer loader, e.g. path=models/speechtokenizer")
    p.add_argument("--out", required=True, help="output folder of code shards")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--items-per-shard", type=int, default=256)
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    a = p.parse_args(argv)
    kwargs = dict(kv.split("=", 1) for kv in a.tokenizer_arg)
    try:
        counts = tokenize_corpus(a.corpus, a.modality, a.tokenizer, a.out, tokenizer_kwargs=kwargs,
                                 workers=a.workers, items_per_shard=a.items_per_shard, part=a.part, parts=a.parts)
    except AnyGPTError as e:
        print(f"anygpt tokenize: {e}")
        return 1
    run = [r for r in _read_lines(Path(a.out) / "runs.jsonl") if r.get("part") == a.part][-1]
    print(f"encoded {counts['encoded']}, failed {counts['failed']} (see failed.jsonl), skipped {counts['skipped']}; "
          f"{run['seconds']:.1f} s, {run['items_per_second']:.2f} items/s")
    return 0
