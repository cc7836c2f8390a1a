"""Stage 2: descriptions -> media codes, conversations -> `conversations.jsonl`.

Images and music are taken from the corpora: by the item a script references, else the item
whose caption shares the most words with the description. Music may be cut to a random excerpt
of the clip (`excerpt_seconds`), as in pretraining (anygpt.data.pretraining.excerpt): whole
frames, length and start drawn from the conversation's id, so a re-run writes the same codes;
the description still fits (it names the piece's instrument, key and tempo, which an excerpt
keeps). Speech is synthesised with a TTS voice (a different voice for the user and the
assistant of one conversation) and encoded with the speech tokenizer. Output lines hold each
turn's parts, text as text and codes as numbers (anygpt.data.conversations), and `meta.json`
the token specs used. A killed run continues: finished conversations are skipped.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from anygpt.data.codes_store import CodesStore
from anygpt.data.conversations import CONVERSATIONS, chat_sample, read_conversations, turn_record  # noqa: F401
from anygpt.data.instruct.script import Element, Script
from anygpt.data.pretraining import NO_EXCERPTS, excerpt, excerpt_frames
from anygpt.errors import AnyGPTError
from anygpt.files import append_jsonl, atomic_path, write_json
from anygpt.layout import TokenLayout
from anygpt.manifest import iter_jsonl
from anygpt.modalities.base import ModalityTokenizer
from anygpt.parts import CodesPart, Part, TextPart
from anygpt.templates import SPOKEN_INSTRUCTION_PROMPT, Turn, spoken_reply

Speaker = Callable[[str, str, Path], None]  # (text, voice, wav path)
FLITE_VOICES = ("kal", "rms", "slt")


def flite_speaker(text: str, voice: str, wav: Path) -> None:
    """Synthesise with Debian's flite (16 kHz WAV)."""
    try:
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True,
                       capture_output=True, timeout=60)
    except FileNotFoundError:
        raise AnyGPTError("flite not found: install it with `bash scripts/setup.sh` (Debian package flite)") from None


def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", s.lower()))


class CaptionIndex:
    """Nearest corpus item by word overlap (Jaccard) of captions."""

    def __init__(self, records: Sequence[dict], field: str = "caption"):
        self.ids = [r["id"] for r in records]
        self.words = [_words(r[field]) for r in records]

    def nearest(self, description: str) -> str:
        q = _words(description)
        scores = [len(q & w) / (len(q | w) or 1) for w in self.words]
        return self.ids[max(range(len(scores)), key=scores.__getitem__)]


class Realiser:
    """excerpt_seconds: modality -> (min, max) seconds of the excerpt cut from each of its items
    (music; not speech or images); durations: modality -> item id -> seconds (the corpus
    manifest's "duration"), needed to turn those seconds into frames."""

    def __init__(self, layout: TokenLayout, stores: dict[str, CodesStore], *,
                 indexes: dict[str, CaptionIndex] | None = None,
                 speech_tokenizer: ModalityTokenizer | None = None, speaker: Speaker = flite_speaker,
                 voices: Sequence[str] = FLITE_VOICES, cache_dir: str | Path = ".cache/tts",
                 excerpt_seconds: dict[str, tuple[float, float]] | None = None,
                 durations: dict[str, dict[str, float]] | None = None):
        self.layout, self.stores, self.indexes = layout, stores, indexes or {}
        self.speech_tokenizer, self.speaker, self.voices = speech_tokenizer, speaker, list(voices)
        self.cache = Path(cache_dir)
        self.excerpt_seconds, self.durations = excerpt_seconds or {}, durations or {}
        for m in self.excerpt_seconds:
            if m in NO_EXCERPTS:
                raise AnyGPTError(f"no excerpts of {m} ({NO_EXCERPTS[m]})")

    def media(self, el: Element, voice: str, rng: random.Random) -> CodesPart:
        if el.kind == "speech":
            if self.speech_tokenizer is None:
                raise AnyGPTError("speech in a conversation needs a speech tokenizer")
            key = hashlib.sha256(f"{voice}\n{el.text}".encode()).hexdigest()[:24]
            wav = self.cache / f"{key}.wav"
            if not wav.exists():
                self.cache.mkdir(parents=True, exist_ok=True)
                with atomic_path(wav) as tmp:
                    self.speaker(el.text, voice, tmp)
            return CodesPart("speech", self.speech_tokenizer.encode_file(wav))
        store = self.stores.get(el.kind)
        if store is None:
            raise AnyGPTError(f"no {el.kind} codes were given to realise {el.kind} elements")
        ref = el.ref if el.ref in store else self.indexes[el.kind].nearest(el.text) if el.kind in self.indexes else None
        if ref is None:
            raise AnyGPTError(f"{el.kind} element {el.text[:40]!r} has no corpus item and no caption index")
        codes = store.get(ref)
        if el.kind in self.excerpt_seconds:
            duration = self.durations.get(el.kind, {}).get(ref)
            if not duration:
                raise AnyGPTError(f"{el.kind} item {ref!r} has no 'duration' in its manifest, needed to cut "
                                  "excerpts in seconds")
            codes, _ = excerpt(codes, excerpt_frames(self.excerpt_seconds[el.kind], codes.shape[1], duration), rng)
        return CodesPart(el.kind, codes)

    def turns(self, script: Script) -> list[Turn]:
        rng = random.Random(script.id)
        user_voice, bot_voice = rng.sample(self.voices, 2) if len(self.voices) > 1 else self.voices * 2
        out = []
        for t in script.turns:
            voice = user_voice if t.role == "user" else bot_voice
            if script.spoken and t.role == "assistant":
                transcript, reply, speech = t.elements
                out.append(Turn("assistant", spoken_reply(transcript.text, reply.text, self.media(speech, voice, rng))))
                continue
            parts: list[Part] = [TextPart(e.text) if e.kind == "text" else self.media(e, voice, rng) for e in t.elements]
            if script.spoken and t.role == "user":
                parts.append(TextPart(SPOKEN_INSTRUCTION_PROMPT))
            out.append(Turn(t.role, parts))
        return out

    def run(self, scripts: Sequence[Script], out_dir: str | Path, *, progress: bool = True) -> dict:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "meta.json", {"specs": [s.to_dict() for s in self.layout.specs]}, indent=None)
        path = out / CONVERSATIONS
        done = {r.get("id") for _, r in iter_jsonl(path, lenient=True)}  # a line cut by a kill is made again
        counts = {"written": 0, "skipped": len(done), "failed": 0}
        for s in tqdm(scripts, desc="conversations", disable=not progress):
            if s.id in done:
                continue
            try:
                turns = self.turns(s)
            except (AnyGPTError, subprocess.SubprocessError, KeyError, ValueError) as e:
                counts["failed"] += 1
                append_jsonl(out / "failed.jsonl", {"id": s.id, "reason": str(e)})
                continue
            append_jsonl(path, {"id": s.id, "scenario": s.scenario, "spoken": s.spoken,
                                "turns": [turn_record(t) for t in turns]})
            counts["written"] += 1
        return counts
