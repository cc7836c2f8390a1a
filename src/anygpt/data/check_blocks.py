"""Check a block build against its sources: `anygpt blocks --config C --out X --check`.

Every block is decoded back and compared with what it was built from:
- media: each media segment parsed out of a block must equal, code for code, an item of the
  dataset's code shards (pair and interleaved datasets: one of the items of its splits, not a
  held-out one) or a media element of its conversation file (chat datasets); in a dataset with
  excerpts ("excerpt_seconds"), a segment may instead equal a contiguous run of whole frames
  codes[:, t:t+L] of one of its items, with L within the configured bounds;
- loss: pretraining blocks (pair, interleaved, text) train on every non-pad token and on no
  pad; chat blocks train on the assistant's content and turn end only: nothing from the system
  prompt to the user's turn end, no role marker, and no gap inside an assistant message.

The result is written to X/check.json. Memory: one shard of blocks at a time, plus a 16-byte
digest per source media item, plus the source codes of datasets with excerpts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from anygpt.data.blocks_config import dataset_records
from anygpt.data.codes_store import CodesStore
from anygpt.data.conversations import record_turns
from anygpt.data.packing import IGNORE
from anygpt.data.shards import BlockReader
from anygpt.errors import AnyGPTError
from anygpt.files import write_json
from anygpt.layout import TokenLayout
from anygpt.manifest import read_json
from anygpt.parts import CodesPart
from anygpt.templates import get_chat_template
from anygpt.token_spec import TokenSpec

CHECK_FILE = "check.json"


def codes_digest(modality: str, codes: torch.Tensor) -> bytes:
    """A key for exact comparison of codes [K, T]: modality, shape and every value."""
    c = codes.to(torch.int64).contiguous()
    return hashlib.blake2b(f"{modality}{tuple(c.shape)}".encode() + c.numpy().tobytes(), digest_size=16).digest()


class ExcerptIndex:
    """Finds where a run of frames [K, L] occurs in the source items: every frame position of
    every item, keyed by the codes of its frame, then compared code for code."""

    def __init__(self) -> None:
        self.items: list[tuple[np.ndarray, bool, tuple[int, int] | None]] = []  # codes [K, T], own, bounds
        self._at: dict[bytes, list[tuple[int, int]]] = {}

    def add(self, codes: torch.Tensor, own: bool, bounds: tuple[int, int] | None) -> None:
        c = codes.numpy().astype(np.int64)
        n = len(self.items)
        self.items.append((c, own, bounds))
        for t in range(c.shape[1]):
            self._at.setdefault(c[:, t].tobytes(), []).append((n, t))

    def find(self, codes: torch.Tensor) -> tuple[bool, tuple[int, int] | None, int, int] | None:
        """codes [K, L] -> (own, bounds, T, t) of the item it is codes[:, t:t+L] of (own items
        first), or None."""
        c = codes.numpy().astype(np.int64)
        if c.shape[1] == 0:
            return None
        found = None
        for n, t in self._at.get(c[:, 0].tobytes(), ()):
            src, own, bounds = self.items[n]
            if src.shape[0] == c.shape[0] and t + c.shape[1] <= src.shape[1] and np.array_equal(src[:, t:t + c.shape[1]], c):
                found = (own, bounds, src.shape[1], t)
                if own:
                    break
        return found


def _sources(ds, layout: TokenLayout, rows: list[dict]) -> tuple[set[bytes], set[bytes], ExcerptIndex | None]:
    """(digests of the dataset's own media, digests of media it must not contain, the index of
    source frames for a dataset with excerpts, else None)."""
    if ds.kind == "chat":
        own = {codes_digest(p.modality, p.codes) for r in rows for t in record_turns(r, layout)
               for p in t.parts if isinstance(p, CodesPart)}
        return own, set(), None
    if ds.kind == "text":
        return set(), set(), None
    store = CodesStore(Path(ds.codes))
    wanted = {r["id"]: r for r in rows}
    own, other = set(), set()
    excerpts = ExcerptIndex() if getattr(ds, "excerpt_seconds", None) else None
    for item_id, codes in store.items():
        (own if item_id in wanted else other).add(codes_digest(ds.modality, codes))
        if excerpts is not None:
            row = wanted.get(item_id)
            excerpts.add(codes, row is not None, ds.excerpt_bounds(row, codes.shape[1]) if row else None)
    return own, other - own, excerpts


def _find(seq: list[int], pattern: list[int]) -> list[int]:
    """Start positions of pattern in seq."""
    n = len(pattern)
    if not n:
        return []
    first = pattern[0]
    return [i for i, x in enumerate(seq) if x == first and seq[i:i + n] == pattern]


def chat_mask_problems(ids: list[int], trained: list[bool], markers: dict[str, list[int]], lm_eos: int | None) -> dict:
    """Counts of loss-mask faults in one chat block (ids [n] without trailing padding).

    markers: token ids of the template's user_role, bot_role, user_end and bot_end."""
    n = len(ids)
    region = [""] * n  # "", "user", "role", "assistant"
    starts = {k: _find(ids, v) for k, v in markers.items()}
    for a in starts["user_role"]:  # user region: its role marker through its turn end
        ends = [e for e in starts["user_end"] if e >= a]
        b = ends[0] + len(markers["user_end"]) if ends else n
        for i in range(a, b):
            region[i] = "user"
    for k in ("user_role", "bot_role"):
        for a in starts[k]:
            for i in range(a, a + len(markers[k])):
                region[i] = "role"
    out = {"assistant_turns": 0, "turn_ends_trained": 0, "trained_in_user_turns": 0, "trained_role_markers": 0,
           "trained_outside_assistant": 0, "untrained_in_assistant_message": 0}
    turn_end_positions: set[int] = set()
    for a in starts["bot_role"]:
        a += len(markers["bot_role"])
        ends = [e for e in starts["bot_end"] if e >= a]
        b = ends[0] + len(markers["bot_end"]) if ends else n
        out["assistant_turns"] += 1
        if ends and all(trained[i] for i in range(ends[0], b)):
            out["turn_ends_trained"] += 1
        turn_end_positions.update(range(ends[0], b) if ends else ())
        began = False
        for i in range(a, b):
            if region[i] == "user":  # a user turn before this message ended: counted there
                break
            region[i] = "assistant"
            began = began or trained[i]
            if began and not trained[i]:
                out["untrained_in_assistant_message"] += 1
    for i in range(n):
        if not trained[i]:
            continue
        if region[i] == "user":
            out["trained_in_user_turns"] += 1
        elif region[i] == "role":
            out["trained_role_markers"] += 1
        elif region[i] == "":
            after_end = i > 0 and (i - 1) in turn_end_positions and ids[i] == lm_eos
            out["trained_outside_assistant"] += 0 if after_end else 1
    return out


def check_blocks(cfg, out_dir: str | Path, *, max_blocks: int | None = None) -> dict:
    """cfg: the BlocksConfig the blocks were built with. Returns (and writes) the check report;
    report["ok"] is False if any block fails."""
    from transformers import AutoTokenizer

    out = Path(out_dir)
    if not (out / "anygpt.json").exists():
        raise AnyGPTError(f"{out}: no anygpt.json; build the blocks first (anygpt blocks --config ... --out {out})")
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    specs = [TokenSpec.from_dict(s) for s in read_json(out / "anygpt.json", what="blocks folder config")["specs"]]
    layout = TokenLayout.from_tokenizer(tok, specs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    by_name = {ds.name: ds for ds in cfg.datasets}
    reader = BlockReader(out, shuffle=False)
    built = reader.index.get("report", {})
    split_expected = bool(built.get("split_samples"))
    part, parts = built.get("part", 0), built.get("parts", 1)  # a part's blocks hold only its part's items
    sources = {ds.name: _sources(ds, layout, dataset_records(ds, part, parts)) for ds in cfg.datasets}

    def text_ids(s: str) -> list[int]:
        return tok(s, add_special_tokens=False)["input_ids"]

    per: dict[str, dict] = {}
    for k, (ids, labels, name) in enumerate(reader):
        if max_blocks is not None and k >= max_blocks:
            break
        ds = by_name[name]
        r = per.setdefault(name, {"blocks": 0, "media_segments": 0, "media_matched": 0, "media_excerpts": 0,
                                  "excerpts_out_of_bounds": 0, "media_held_out": 0, "media_unknown": 0,
                                  "media_cut": 0, "trained_tokens": 0, "masked_tokens": 0,
                                  "label_mismatches": 0, "trained_pad": 0})
        r["blocks"] += 1
        nonpad = np.flatnonzero(ids != pad)
        n = int(nonpad[-1]) + 1 if len(nonpad) else 0
        body, lab = ids[:n].tolist(), labels[:n]
        trained = lab != IGNORE
        r["trained_tokens"] += int(trained.sum())
        r["masked_tokens"] += int((~trained).sum())
        r["label_mismatches"] += int((lab[trained] != ids[:n][trained]).sum())
        r["trained_pad"] += int((labels[n:] != IGNORE).sum())
        own, other, excerpts = sources[name]
        for p in layout.parse_ids(body, lambda run: tok.decode(run), strict=False):
            if not isinstance(p, CodesPart):
                continue
            r["media_segments"] += 1
            if p.repaired:
                r["media_cut"] += 1
                continue
            d = codes_digest(p.modality, p.codes)
            if d in own:
                r["media_matched"] += 1
            elif d in other:
                r["media_held_out"] += 1
            elif excerpts is not None and (hit := excerpts.find(p.codes)) is not None:
                from_own, bounds, _, _ = hit
                if not from_own:
                    r["media_held_out"] += 1
                elif bounds is not None and bounds[0] <= p.codes.shape[1] <= bounds[1]:
                    r["media_matched"] += 1
                    r["media_excerpts"] += 1
                else:
                    r["excerpts_out_of_bounds"] += 1
            else:
                r["media_unknown"] += 1
        if ds.kind == "chat":
            t = get_chat_template(ds.template)
            markers = {"user_role": text_ids(t.user_role), "bot_role": text_ids(t.bot_role),
                       "user_end": text_ids(t.user_end), "bot_end": text_ids(t.bot_end)}
            for key, v in chat_mask_problems(body, trained.tolist(), markers, tok.eos_token_id).items():
                r[key] = r.get(key, 0) + v
        else:
            r["untrained_tokens"] = r.get("untrained_tokens", 0) + int((~trained).sum())
    ok = True
    for name, r in per.items():
        faults = (r["media_held_out"] + r["media_unknown"] + r["excerpts_out_of_bounds"] + r["label_mismatches"]
                  + r["trained_pad"]
                  + (0 if split_expected else r["media_cut"]) + r.get("untrained_tokens", 0)
                  + r.get("trained_in_user_turns", 0) + r.get("trained_role_markers", 0)
                  + r.get("trained_outside_assistant", 0) + r.get("untrained_in_assistant_message", 0)
                  + r.get("assistant_turns", 0) - r.get("turn_ends_trained", 0))
        r["ok"] = faults == 0
        ok = ok and r["ok"]
    report = {"ok": ok, "blocks_checked": sum(r["blocks"] for r in per.values()), "datasets": per}
    write_json(out / CHECK_FILE, report)
    return report


def format_check(rep: dict) -> str:
    lines = [f"{'dataset':<18} {'blocks':>7} {'media':>7} {'matched':>7} {'excerpt':>7} {'other':>6} {'trained':>9} "
             f"{'masked':>9}  loss mask"]
    for name, r in rep["datasets"].items():
        if "assistant_turns" in r:
            mask = (f"assistant turn ends trained {r['turn_ends_trained']}/{r['assistant_turns']}; trained in user turns "
                    f"{r['trained_in_user_turns']}, role markers {r['trained_role_markers']}, elsewhere "
                    f"{r['trained_outside_assistant']}; gaps in assistant messages {r['untrained_in_assistant_message']}")
        else:
            mask = f"every non-pad token trained: {'yes' if r.get('untrained_tokens', 0) == 0 else 'NO'}"
        other = r["media_held_out"] + r["media_unknown"] + r["media_cut"] + r.get("excerpts_out_of_bounds", 0)
        lines.append(f"{name:<18} {r['blocks']:>7} {r['media_segments']:>7} {r['media_matched']:>7} "
                     f"{r.get('media_excerpts', 0):>7} {other:>6} "
                     f"{r['trained_tokens']:>9} {r['masked_tokens']:>9}  {mask}")
    lines.append(f"{rep['blocks_checked']} blocks decoded back: " + ("all media equal their source codes, loss masks as "
                                                                      "specified" if rep["ok"] else "FAULTS (see check.json)"))
    return "\n".join(lines)
