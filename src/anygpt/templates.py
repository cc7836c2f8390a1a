"""Sequence templates: pretraining pairs, chat templates, the spoken-instruction reply format.

Templates produce lists of parts (anygpt.parts); text is kept as strings and media as codes
or files, so the sequence encoder can turn media into ids arithmetically.

Pretraining (the release's two directions; loss on every token):
    [Human]: {instruction} {X}<eoh> [MMGPT]: {text}<eos>                  (X -> text)
    [Human]: {instruction} This is input: {text}<eoh> [MMGPT]: {X}<eos>   (text -> X)
Chat ("MMGPT" is what the released chat model is prompted with; "AnyGPT" is what its
fine-tuning script writes):
    {system}\\n[Human]: {user}<eoh>\\n[MMGPT]: {assistant}<eos>\\n[Human]: ...<eoh>\\n[MMGPT]:
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from anygpt.instructions import instruction_pool
from anygpt.layout import BOT_END, BOT_ROLE, INSTRUCTION_SEP, RESPONSE_SEP, USER_END, USER_ROLE
from anygpt.parts import CodesPart, MediaFilePart, Part, TextPart

MediaPart = CodesPart | MediaFilePart

SPOKEN_INSTRUCTION_PROMPT = "Please recognize the voice command and give reply and voice"


def pretraining_pair(
    media: MediaPart, text: str, direction: str, rng: random.Random, instruction: str | None = None
) -> list[Part]:
    """One text-centric pretraining sample. direction: 'to_text' (X -> text) or 'from_text'."""
    instruction = instruction or rng.choice(instruction_pool(media.modality, direction))
    if direction == "to_text":
        return [TextPart(f"{USER_ROLE}: {instruction} "), media,
                TextPart(f"{USER_END} {BOT_ROLE}: {text}{BOT_END}")]
    if direction == "from_text":
        return [TextPart(f"{USER_ROLE}: {instruction} This is input: {text}{USER_END} {BOT_ROLE}: "),
                media, TextPart(BOT_END)]
    raise ValueError(f"direction must be 'to_text' or 'from_text', not {direction!r}")


def pretraining_prompt(direction: str, instruction: str, *, media: MediaPart | None = None,
                       text: str | None = None) -> list[Part]:
    """The start of a pretraining pair, up to where the model's answer begins: what a model
    trained on `pretraining_pair` is prompted with. It ends exactly where the training text
    continues ('[MMGPT]:' before ' {text}', '[MMGPT]: ' before the media), since a prompt
    ending in another place tokenizes differently from the training text."""
    if direction == "to_text":
        if media is None:
            raise ValueError("a to_text prompt needs the media")
        return [TextPart(f"{USER_ROLE}: {instruction} "), media, TextPart(f"{USER_END} {BOT_ROLE}:")]
    if direction == "from_text":
        if text is None:
            raise ValueError("a from_text prompt needs the text")
        return [TextPart(f"{USER_ROLE}: {instruction} This is input: {text}{USER_END} {BOT_ROLE}: ")]
    raise ValueError(f"direction must be 'to_text' or 'from_text', not {direction!r}")


@dataclass
class Turn:
    """One message. role: 'user' or 'assistant'; parts in order (text, media)."""

    role: str
    parts: list[Part] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant"):
            raise ValueError(f"turn role must be 'user' or 'assistant', not {self.role!r}")


@dataclass(frozen=True)
class ChatTemplate:
    """A fastchat-style two-role template ("ADD_COLON_TWO")."""

    name: str
    system: str
    user_role: str
    bot_role: str
    user_end: str
    bot_end: str

    def render(
        self, turns: Sequence[Turn], *, add_generation_prompt: bool = True, force_modality_start: str | None = None
    ) -> list[tuple[Part, bool]]:
        """turns -> [(part, is_assistant_content)], the flag marking what fine-tuning trains on
        (assistant message and its end token). With add_generation_prompt and a last user turn,
        ends with '{bot_role}:' (plus ' <soim>' etc. if force_modality_start is a start marker)."""
        out: list[tuple[Part, bool]] = [(TextPart(self.system + "\n"), False)]
        for i, turn in enumerate(turns):
            last = i == len(turns) - 1
            if turn.role == "user":
                out.append((TextPart(f"{self.user_role}: "), False))
                out += [(p, False) for p in _spaced(turn.parts)]
                out.append((TextPart(self.user_end + "\n"), False))
            else:
                out.append((TextPart(f"{self.bot_role}: "), False))
                out += [(p, True) for p in _spaced(turn.parts)]
                out.append((TextPart(self.bot_end), True))
                if not last:
                    out.append((TextPart("\n"), False))
        if add_generation_prompt and turns and turns[-1].role == "user":
            prompt = f"{self.bot_role}:"
            if force_modality_start:
                prompt += " " + force_modality_start
            out.append((TextPart(prompt), False))
        return _merge_text(out)

    def prompt(self, turns: Sequence[Turn], **kw) -> list[Part]:
        return [p for p, _ in self.render(turns, **kw)]


def _spaced(parts: Sequence[Part]) -> list[Part]:
    """Join a message's parts with single spaces, as the release's task prompts do ('{image} {question}')."""
    out: list[Part] = []
    for p in parts:
        if out:
            out.append(TextPart(" "))
        out.append(p)
    return out


def _merge_text(items: list[tuple[Part, bool]]) -> list[tuple[Part, bool]]:
    merged: list[tuple[Part, bool]] = []
    for p, flag in items:
        if merged and isinstance(p, TextPart) and isinstance(merged[-1][0], TextPart) and merged[-1][1] == flag:
            merged[-1] = (TextPart(merged[-1][0].text + p.text), flag)
        elif not (isinstance(p, TextPart) and not p.text):
            merged.append((p, flag))
    return merged


SYSTEM_MMGPT = ("You are an AI assistant named MMGPT who can understand and generate multimodal content, "
                "including text, speech, images and audio.")
SYSTEM_ANYGPT = ("You are an AI assistant named AnyGPT who can understand and generate multimodal content, "
                 "including text, speech, images and audio.")

CHAT_TEMPLATES: dict[str, ChatTemplate] = {
    "MMGPT": ChatTemplate("MMGPT", SYSTEM_MMGPT, USER_ROLE, BOT_ROLE, USER_END, BOT_END),
    "AnyGPT": ChatTemplate("AnyGPT", SYSTEM_ANYGPT, USER_ROLE, "[AnyGPT]", USER_END, "<eom>"),
}


def get_chat_template(name: str) -> ChatTemplate:
    try:
        return CHAT_TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template {name!r}; choose from {', '.join(CHAT_TEMPLATES)}") from None


def spoken_instruction_turn(speech: MediaPart, prompt: str = SPOKEN_INSTRUCTION_PROMPT) -> Turn:
    """The user turn of a spoken instruction: the speech, then the request for reply and voice."""
    return Turn("user", [speech, TextPart(prompt)])


def spoken_reply(transcript: str, reply: str, speech: MediaPart) -> list[Part]:
    """The assistant's answer to a spoken instruction:
    '<-Ins-> {transcript}\\n <-Res-> {reply} <sosp>...<eosp>'."""
    return [TextPart(f"{INSTRUCTION_SEP} {transcript}\n {RESPONSE_SEP} {reply} "), speech]


@dataclass
class SpokenReply:
    transcript: str
    reply: str
    speech: CodesPart | None


def parse_spoken_reply(parts: Sequence[Part]) -> SpokenReply:
    """Inverse of spoken_reply, tolerant of missing pieces (a model may omit the speech)."""
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    speech = next((p for p in parts if isinstance(p, CodesPart) and p.modality == "speech"), None)
    transcript, reply = "", text
    if INSTRUCTION_SEP in text:
        after = text.split(INSTRUCTION_SEP, 1)[1]
        transcript, _, reply = after.partition(RESPONSE_SEP)
    elif RESPONSE_SEP in text:
        reply = text.split(RESPONSE_SEP, 1)[1]
    return SpokenReply(transcript.strip(), reply.strip(), speech)
