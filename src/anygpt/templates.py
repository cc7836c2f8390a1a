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


def markup(text: str) -> TextPart:
    """Template text whose role and marker strings are the tokens they name (TextPart.markup)."""
    return TextPart(text, markup=True)


def pretraining_pair(
    media: MediaPart, text: str, direction: str, rng: random.Random, instruction: str | None = None
) -> list[Part]:
    """One text-centric pretraining sample. direction: 'to_text' (X -> text) or 'from_text'."""
    instruction = instruction or rng.choice(instruction_pool(media.modality, direction))
    if direction == "to_text":
        return [markup(f"{USER_ROLE}: "), TextPart(f"{instruction} "), media,
                markup(f"{USER_END} {BOT_ROLE}: "), TextPart(text), markup(BOT_END)]
    if direction == "from_text":
        return [markup(f"{USER_ROLE}: "), TextPart(f"{instruction} This is input: {text}"),
                markup(f"{USER_END} {BOT_ROLE}: "), media, markup(BOT_END)]
    raise ValueError(f"direction must be 'to_text' or 'from_text', not {direction!r}")


def pretraining_prompt(direction: str, instruction: str, *, media: MediaPart | None = None,
                       text: str | None = None) -> list[Part]:
    """The start of a pretraining pair, up to where the model's answer begins: what a model
    trained on `pretraining_pair` is prompted with. It ends exactly where the training text
    continues ('[MMGPT]:' before ' {text}', '[MMGPT]: ' before the media), since a prompt
    ending in another place tokenizes differently from the training text. The roles are markup,
    the instruction and text plain, as in pretraining_pair."""
    if direction == "to_text":
        if media is None:
            raise ValueError("a to_text prompt needs the media")
        return [markup(f"{USER_ROLE}: "), TextPart(f"{instruction} "), media, markup(f"{USER_END} {BOT_ROLE}:")]
    if direction == "from_text":
        if text is None:
            raise ValueError("a from_text prompt needs the text")
        return [markup(f"{USER_ROLE}: "), TextPart(f"{instruction} This is input: {text}"),
                markup(f"{USER_END} {BOT_ROLE}: ")]
    raise ValueError(f"direction must be 'to_text' or 'from_text', not {direction!r}")


def instruction_prompt(direction: str, modality: str, *, media: MediaPart | None = None,
                       text: str | None = None) -> list[Part]:
    """pretraining_prompt with the first instruction of the modality's pool for that direction:
    how the eval, guidance's unconditional stream and the chat's instruction routes ask."""
    return pretraining_prompt(direction, instruction_pool(modality, direction)[0], media=media, text=text)


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
        out: list[tuple[Part, bool]] = [(markup(self.system + "\n"), False)]
        for i, turn in enumerate(turns):
            last = i == len(turns) - 1
            if turn.role == "user":
                out.append((markup(f"{self.user_role}: "), False))
                out += [(p, False) for p in _spaced(turn.parts)]
                out.append((markup(self.user_end + "\n"), False))
            else:
                out.append((markup(f"{self.bot_role}: "), False))
                out += [(p, True) for p in _spaced(turn.parts)]
                out.append((markup(self.bot_end), True))
                if not last:
                    out.append((markup("\n"), False))
        if add_generation_prompt and turns and turns[-1].role == "user":
            prompt = f"{self.bot_role}:"
            if force_modality_start:
                prompt += " " + force_modality_start
            out.append((markup(prompt), False))
        return _merge_text(out)

    def prompt(self, turns: Sequence[Turn], **kw) -> list[Part]:
        return [p for p, _ in self.render(turns, **kw)]


def _spaced(parts: Sequence[Part]) -> list[Part]:
    """Join a message's parts with single spaces, as the release's task prompts do ('{image} {question}').
    Markup parts (spoken_reply's separators) bring their own spacing."""
    out: list[Part] = []
    for p in parts:
        if out and not _is_markup(out[-1]) and not _is_markup(p):
            out.append(TextPart(" "))
        out.append(p)
    return out


def _is_markup(p: Part) -> bool:
    return isinstance(p, TextPart) and p.markup


def _merge_text(items: list[tuple[Part, bool]]) -> list[tuple[Part, bool]]:
    """Adjacent text of the same flag and the same kind (markup or plain) as one part."""
    merged: list[tuple[Part, bool]] = []
    for p, flag in items:
        prev = merged[-1][0] if merged else None
        if (isinstance(p, TextPart) and isinstance(prev, TextPart) and merged[-1][1] == flag
                and prev.markup == p.markup):
            merged[-1] = (TextPart(prev.text + p.text, markup=p.markup), flag)
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
    return [markup(f"{INSTRUCTION_SEP} "), TextPart(f"{transcript}\n "), markup(f"{RESPONSE_SEP} "),
            TextPart(f"{reply} "), speech]


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
