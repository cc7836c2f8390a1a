"""Which modality a request asks for: the rule behind `anygpt chat --force-modality auto`.

A request says what it wants, and a tiny model is not reliable at reading that itself, so the
chat path reads it with this fixed rule and starts the reply with that modality's start marker
(text: no marker). Words are read left to right, and the first cue decides, so a payload
after the instruction ("Say: draw a circle") does not count:

1. Action words:
   - image: draw, paint, sketch, illustrate, show ("show me a red star")
   - speech: say, speak, read (aloud, out, "this for me"), pronounce, narrate, recite, utter,
     vocalise; but "say something" and "say what ..." ask for text
   - music: play, sing, compose
   - text: describe, caption, transcribe, explain, summarise, tell, name, list, count,
     translate, identify, recognise, characterise, state
   - make, create, generate, produce, render, design, give, write, perform, hear: their
     object decides (the
     words up to a preposition, a relative clause or an -ing word): a text noun (caption,
     description, sentence, story, fact ...) means text, a modality noun (picture, image,
     drawing; music, song, tune, melody, piece; voice, speech, spoken) that modality; with
     neither the reading goes on ("show" and "compose" then mean image and music).
   An action word after an article or "this" is a noun ("this caption"). In a question
   ("What does the speaker say?") an action word counts only after "you" ("Can you draw a
   cat?").
2. No action word: a question means text; else the first modality or text noun that does not
   point at an attachment ("this picture", "the speech") decides ("An image of a cat, please."
   -> image, "Convert the speech to text." -> text).
3. Otherwise text.

Text means a reply without media: the constraint starts no segment. A choice the model cannot
write (a modality not in its layout) falls back to text. A turn with no text (speech or a
picture alone) is left to the model. The paper's spoken instruction ("... give reply and
voice") gets the paper's reply: the model writes it, and speech is appended if it wrote none
(`ensured_modalities`).
"""

from __future__ import annotations

import re
from typing import Iterable

from anygpt.templates import SPOKEN_INSTRUCTION_PROMPT

TEXT = "text"
VERBS = {
    "image": frozenset({"draw", "paint", "sketch", "illustrate"}),
    "speech": frozenset({"say", "speak", "pronounce", "narrate", "recite", "utter", "vocalise", "vocalize",
                         "aloud", "read"}),
    "music": frozenset({"play", "sing"}),
    TEXT: frozenset({"describe", "caption", "transcribe", "explain", "summarise", "summarize", "tell", "name",
                     "list", "count", "translate", "identify", "recognise", "recognize", "recognition",
                     "characterise", "characterize", "state", "answer"}),
}
# creation verbs: their object decides; the default when it names nothing (None: read on)
CREATE_VERBS = {"make": None, "create": None, "generate": None, "produce": None, "render": None, "design": None,
                "give": None, "write": None, "perform": None, "hear": None, "show": "image", "compose": "music"}
NOUNS = {
    "image": frozenset({"picture", "pictures", "image", "images", "photo", "photos", "drawing", "drawings",
                        "painting", "illustration", "sketch", "artwork", "visual", "visuals"}),
    "music": frozenset({"music", "musical", "song", "songs", "melody", "melodies", "tune", "tunes", "piece",
                        "clip", "excerpt"}),
    "speech": frozenset({"voice", "speech", "audio", "spoken", "recording"}),
    TEXT: frozenset({"caption", "captions", "description", "descriptions", "sentence", "answer", "summary",
                     "transcript", "transcription", "story", "word", "words", "text", "list", "explanation",
                     "reply", "poem", "name", "names", "fact", "facts", "recognition"}),
}
QUESTION_WORDS = frozenset({"what", "who", "whom", "whose", "which", "where", "when", "why", "how", "is", "are",
                            "was", "were", "do", "does", "did", "can", "could", "will", "would", "should",
                            "shall", "may", "have", "has", "am"})
# words that end a creation verb's object ("an image that matches this description")
OBJECT_END = frozenset({"that", "which", "who", "of", "for", "from", "to", "into", "with", "as", "in", "on",
                        "about", "like", "by", "based", "according", "where", "when", "if", "and", "but", "so"})
# a noun after these points at an attachment or the given text, not at what to write
POINTING = frozenset({"this", "that", "these", "those", "the", "following", "my", "its"})
# an action word after these is a noun ("this caption", "a sketch")
DETERMINERS = POINTING | {"a", "an", "your", "his", "her", "our", "their"}
_TOKEN = re.compile(r"[a-z]+|[.!?;]")


def _noun(words: list[str], i: int) -> str | None:
    """The modality (or "text") that words[i] names as a noun of what to write, else None."""
    w = words[i]
    kind = next((m for m, ws in NOUNS.items() if w in ws), None)
    if kind is None or POINTING & set(words[max(0, i - 2):i]):
        return None
    if w == "piece" and words[i + 1:i + 2] == ["of"]:  # "a piece of knowledge"
        return None
    return kind


def _object(words: list[str], start: int) -> str | None:
    """What the object of a creation verb (words from `start`) names: "text", a modality or None."""
    found = []
    for i in range(start, len(words)):
        w = words[i]
        if w in OBJECT_END or w in ".!?;" or (w.endswith("ing") and w not in NOUNS["image"]):
            break
        kind = _noun(words, i)
        if kind:
            found.append(kind)
    return TEXT if TEXT in found else (found[0] if found else None)


def _action(words: list[str], i: int) -> str | None:
    """The modality the action word words[i] asks for, or None if it is none."""
    w, after = words[i], words[i + 1:i + 4]
    if i and words[i - 1] in DETERMINERS:
        return None
    if w in CREATE_VERBS:
        return _object(words, i + 1) or CREATE_VERBS[w]
    if w == "say" and after[:1] and after[0] in {"something", "anything"} | QUESTION_WORDS | {"if", "whether"}:
        return TEXT
    if w == "read" and not ({"aloud", "out", "this", "it", "these"} & set(after[:2])):
        return None
    return next((m for m, verbs in VERBS.items() if w in verbs), None)


def requested_modality(request: str) -> str:
    """The modality a request asks for: "text", "image", "speech" or "music" (rule above)."""
    words = _TOKEN.findall(request.lower())
    question, heard_you = False, False
    for i, w in enumerate(words):
        if i == 0 or words[i - 1] in ".!?;":
            question, heard_you = w in QUESTION_WORDS, False
        heard_you |= w == "you"
        if w in ".!?;" or (question and not heard_you):
            continue
        if w == "out" and words[i + 1:i + 2] == ["loud"]:
            return "speech"
        kind = _action(words, i)
        if kind:
            return kind
    real = [w for w in words if w not in ".!?;"]
    if (real and real[0] in QUESTION_WORDS) or request.rstrip().endswith("?"):
        return TEXT
    return next((k for k in (_noun(words, i) for i in range(len(words))) if k), TEXT)


def choose_modality(request: str | None, available: Iterable[str]) -> str | None:
    """The `force_modality` for a reply to `request`: the requested modality when it is one of
    `available` (the model's media modalities), else "text" (a reply without media). None (the
    model chooses) when there is no text to read, or for the paper's spoken-instruction prompt,
    whose reply is text and then speech (`anygpt.templates.spoken_reply`)."""
    if not request or _spoken_instruction(request):
        return None
    want = requested_modality(request)
    return want if want in set(available) else TEXT


def ensured_modalities(request: str | None, available: Iterable[str]) -> list[str]:
    """Media a reply to `request` must hold besides what it starts with: speech for the paper's
    spoken instruction (`<-Ins-> transcript <-Res-> reply` and then the reply spoken), when the
    model can speak; otherwise none. `generate` appends a missing one as the server does."""
    return ["speech"] if _spoken_instruction(request) and "speech" in set(available) else []


def _spoken_instruction(request: str | None) -> bool:
    """Is `request` the text of the paper's spoken instruction (anygpt.templates)?"""
    return request is not None and request.strip() == SPOKEN_INSTRUCTION_PROMPT


def reply_modality(force: str | None, request: str | None, available: Iterable[str]) -> str | None:
    """A `force_modality` value -> the modality to force ("text": no media): "auto" reads the
    request (choose_modality), "none" or None forces nothing, a modality name forces that one."""
    if force == "auto":
        return choose_modality(request, available)
    return None if force in (None, "none") else force
