"""Conversations for fine-tuning: the conversations.jsonl format and the chat training sample.

conversations.jsonl (written by `anygpt instruct realise`), one conversation per line:
    {"id", "scenario", "spoken", "turns": [{"role": "user" | "assistant", "parts": [PART, ...]}]}
    PART: {"text": "..."}                     plain text (a typed `<soim>` stays characters)
          {"text": "...", "markup": true}     template text whose markers are tokens (`<-Res->`)
          {"modality": "image", "codes": [[...]]}   codes [K, T] as numbers, like the code shards
Files in the first format (each turn's "content" in the release's text form, `<🗣️12>` strings)
are still read; their text is markup, as in any file of that form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from anygpt.data.packing import IGNORE, Sample
from anygpt.errors import AnyGPTError, ManifestError
from anygpt.layout import TokenLayout
from anygpt.manifest import iter_jsonl
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import ChatTemplate, Turn

CONVERSATIONS = "conversations.jsonl"


def part_record(part: TextPart | CodesPart) -> dict:
    if isinstance(part, CodesPart):
        return {"modality": part.modality, "codes": part.codes.tolist()}
    return {"text": part.text, "markup": True} if part.markup else {"text": part.text}


def turn_record(turn: Turn) -> dict:
    """A turn of text and codes -> its JSON record (media files must be encoded first)."""
    return {"role": turn.role, "parts": [part_record(p) for p in turn.parts]}


def record_turns(record: dict, layout: TokenLayout | None = None) -> list[Turn]:
    """A conversation record -> turns. `layout` is needed only for the first format ("content");
    errors are AnyGPTError (the caller adds the file and line)."""
    turns = []
    for t in record["turns"]:
        if "parts" in t:
            parts = [CodesPart(p["modality"], torch.tensor(p["codes"], dtype=torch.long)) if "codes" in p
                     else TextPart(p["text"], markup=bool(p.get("markup"))) for p in t["parts"]]
        elif layout is not None:
            parts = layout.parse_text(t["content"])
        else:
            raise AnyGPTError("a conversation in the first format (turn 'content' as text) needs the token layout")
        turns.append(Turn(t["role"], parts))
    return turns


def read_conversations(path: str | Path, layout: TokenLayout | None = None) -> list[tuple[str, list[Turn]]]:
    """conversations.jsonl -> [(id, turns)]; a bad record raises ManifestError naming file and line."""
    out = []
    for n, rec in iter_jsonl(path):
        try:
            out.append((rec["id"], record_turns(rec, layout)))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{n}: not a conversation record ({type(e).__name__}: {e})") from None
        except AnyGPTError as e:
            raise ManifestError(f"{path}:{n}: {e}") from None
    return out


def chat_sample(turns: Sequence[Turn], template: ChatTemplate, encoder) -> Sample:
    """Render with a chat template; labels only on assistant content and its turn end.
    encoder: the LM's SequenceEncoder."""
    segments = encoder.encode_segments(template.render(turns, add_generation_prompt=False), bos=True, eos=True)
    ids = torch.cat([s for s, _ in segments])
    labels = torch.cat([s if flag else torch.full_like(s, IGNORE) for s, flag in segments])
    return Sample(ids.numpy(), labels.numpy())
