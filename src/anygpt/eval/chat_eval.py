"""Held-out conversations: is each assistant turn answered in the modality it asks for?

For every assistant turn of a realised conversation (`anygpt instruct write --split test`, then
`instruct realise`), the model gets the conversation so far (the reference earlier turns, as in
teacher forcing) and writes the turn. The turn asks for the media kinds the reference turn holds
(an image, music, speech; none: text only). It is answered right if the reply holds a segment
of each kind asked for and no other; every segment must parse strictly (well-formed).

Each turn is written twice: by the model alone (`force_modality` None: what it learned), and
as `anygpt chat` writes it (`force_modality="auto"`: anygpt.modality_choice reads the request;
"right_rule" in the rows, "modality_rate_rule" in the summary).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from anygpt.conversation import Conversation
from anygpt.data.conversations import record_turns
from anygpt.errors import AnyGPTError
from anygpt.lm.generation import GenerationSettings
from anygpt.manifest import read_jsonl
from anygpt.parts import CodesPart
from anygpt.templates import Turn

# one reply: at most 5 s of music (1000 codes) or 12 s of speech, plus text
CHAT_SETTINGS = GenerationSettings(max_new_tokens=1100, do_sample=False, max_frames={"speech": 300, "music": 250})


def read_conversations(folder: Path, layout, limit: int | None = None) -> list[dict]:
    path = Path(folder) / "conversations.jsonl"
    if not path.is_file():
        raise AnyGPTError(f"{path}: no realised conversations; run `anygpt instruct write --split test` and "
                          "`anygpt instruct realise` first")
    rows = read_jsonl(path)
    if limit and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(k * step)] for k in range(limit)]
    for r in rows:
        r["turns"] = record_turns(r, layout)
    return rows


def asked_for(turn: Turn) -> tuple[str, ...]:
    """The media kinds an assistant turn holds, sorted; () for a text-only turn."""
    return tuple(sorted({p.modality for p in turn.parts if isinstance(p, CodesPart)}))


def _reply_kinds(model, turns: list[Turn], settings: GenerationSettings, force: str | None,
                 seed: int) -> tuple[tuple[str, ...], bool]:
    """The media kinds of the model's reply to `turns` (ending with a user turn), and whether
    every segment parsed strictly."""
    try:
        reply = model.generate(Conversation(list(turns)), settings=settings, force_modality=force, seed=seed)
    except AnyGPTError:  # strict parsing refused a malformed segment
        return (), False
    return asked_for(Turn("assistant", reply.parts)), True


def run_chat(folder: Path, model, *, limit: int | None = 40, progress: bool = True,
             settings: GenerationSettings = CHAT_SETTINGS) -> dict:
    t0 = time.time()
    convs = read_conversations(folder, model.layout, limit)
    rows = []
    for c in tqdm(convs, desc="chat", disable=not progress, leave=False):
        for i, turn in enumerate(c["turns"]):
            if turn.role != "assistant":
                continue
            want = asked_for(turn)
            row = {"id": c["id"], "turn": i, "scenario": c.get("scenario"), "asked": list(want) or ["text"]}
            for key, force in (("", None), ("_rule", "auto")):
                got, well_formed = _reply_kinds(model, c["turns"][:i], settings, force, seed=i)
                row |= {f"got{key}": list(got) or ["text"], f"right{key}": well_formed and got == want,
                        f"well_formed{key}": well_formed}
            rows.append(row)
    by: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by["+".join(r["asked"])].append(r["right"])
    n = max(1, len(rows))
    summary = {"modality_rate": sum(r["right"] for r in rows) / n,
               "modality_rate_rule": sum(r["right_rule"] for r in rows) / n,
               "well_formed": sum(r["well_formed"] and r["well_formed_rule"] for r in rows) / n,
               "turns": len(rows), "conversations": len(convs)}
    groups = {"asked": [{"asked": k, "n": len(v), "rate": sum(v) / len(v)} for k, v in sorted(by.items())]}
    return {"task": "chat", "system": "anygpt", "source": str(folder), "n": len(rows), "summary": summary,
            "groups": groups, "items": rows, "seconds": round(time.time() - t0, 1)}
