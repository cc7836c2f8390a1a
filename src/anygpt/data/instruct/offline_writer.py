"""The offline stage-1 writer: conversations from scenario templates and our corpora.

No LLM is needed: each scenario is a small grammar whose slots are filled from phrase pools
and from corpus items (image and music captions, sentences from the text corpus), and 1-4
scenarios are chained into one conversation. Media come from corpus items by reference, so
stage 2 needs no search. Diversity is measured with `distinct_ngrams`.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

from anygpt.data.instruct.script import Element, Script, ScriptTurn

ASK_IMAGE = ["Can you draw {c}?", "Please make a picture of {c}.", "I'd like an image of {c}.",
             "Show me {c}.", "Draw {c}, please.", "Could you create an image showing {c}?",
             "Make me a picture: {c}.", "Generate an image of {c}.", "I need a drawing of {c}.",
             "Paint {c} for me.", "How would {c} look? Draw it.", "Picture this: {c}. Can you draw it?"]
GIVE_IMAGE = ["Here it is.", "Sure, here is the picture.", "Here is my drawing.", "Of course. Here you go.",
              "This is what I made.", "Here's an image of that.", "Done, take a look.", "I drew it for you."]
ASK_ABOUT_IMAGE = ["What is in this picture?", "Describe this image.", "What do you see here?",
                   "Can you tell me what this shows?", "What's this?", "Please describe the picture.",
                   "Tell me about this image.", "What does this image contain?"]
ANSWER_IMAGE = ["It shows {c}", "This is {c}", "I can see {c}", "The picture shows {c}", "It looks like {c}",
                "That is {c}"]
ASK_MUSIC = ["Compose something like this: {c}.", "Play me {c}.", "Can you make music: {c}?",
             "I'd like to hear {c}.", "Please write a short piece: {c}.", "Make a tune that is {c}.",
             "Could you play {c}?", "Give me some music, {c}."]
GIVE_MUSIC = ["Here is the piece.", "Sure, listen to this.", "Here's what I came up with.", "Enjoy.",
              "Here you go.", "This is my attempt."]
ASK_ABOUT_MUSIC = ["What kind of music is this?", "Describe this piece.", "What instrument is playing?",
                   "Tell me about this music.", "How would you describe this tune?", "What am I listening to?"]
ANSWER_MUSIC = ["This is {c}", "It sounds like {c}", "I hear {c}", "That is {c}", "It is {c}"]
ASK_TEXT = ["Tell me something interesting.", "Give me a fact.", "Say something I might not know.",
            "Share a piece of knowledge.", "Teach me something.", "What's a curious fact?",
            "Can you tell me something new?"]
ANSWER_TEXT = ["{s}", "Here is one: {s}", "Did you know? {s}", "Sure. {s}", "Well, {s}"]
ASK_SAY = ["Can you say this out loud: {s}", "Please read this aloud: {s}", "Say: {s}", "Speak this sentence: {s}",
           "Read this for me: {s}"]
GIVE_SPEECH = ["Here it is, spoken.", "Sure, listen.", "Here you go.", "Of course."]
FOLLOW_UP = ["Thanks! ", "Nice. ", "Great. ", "Cool. ", "Okay. ", "Interesting. ", "", "", ""]
SPOKEN_REQUESTS = ["Tell me something interesting.", "Give me a fact, please.", "Say something about the world.",
                   "What can you tell me?", "Share a fact with me.", "Teach me something new."]

SCENARIOS = ("image_request", "image_question", "music_request", "music_question", "text_fact", "say_this")


def _lower_first(s: str) -> str:
    s = s.strip().rstrip(".")
    return s[:1].lower() + s[1:] if s[:2] not in ("I ", "J.") and not s[1:2].isupper() else s


class OfflineWriter:
    """images, music: corpus records (id, caption); sentences: plain strings."""

    def __init__(self, images: Sequence[dict], music: Sequence[dict], sentences: Sequence[str], seed: int = 0,
                 *, speech: bool = True):
        self.images, self.music, self.sentences = list(images), list(music), list(sentences)
        self.seed, self.speech = seed, speech
        self.available = [s for s in SCENARIOS if self._can(s)]
        if not self.available:
            raise ValueError("the offline writer needs at least images, music or sentences")

    def _can(self, scenario: str) -> bool:
        if scenario == "say_this" and not self.speech:
            return False
        if scenario.startswith("image"):
            return bool(self.images)
        if scenario.startswith("music"):
            return bool(self.music)
        return bool(self.sentences)

    def write(self, n: int, *, spoken_share: float = 0.2, max_scenarios: int = 3) -> list[Script]:
        """n conversations; spoken_share of them are spoken instructions (speech in, speech out)."""
        out = []
        for i in range(n):
            rng = random.Random(f"{self.seed}/conversation/{i}")
            if self.speech and self.sentences and rng.random() < spoken_share:
                out.append(self._spoken(f"conv-{i:06d}", rng))
                continue
            chosen = [rng.choice(self.available) for _ in range(rng.randint(1, max_scenarios))]
            turns: list[ScriptTurn] = []
            for j, sc in enumerate(chosen):
                user, assistant = getattr(self, f"_{sc}")(rng)
                if j:
                    user.elements[0].text = rng.choice(FOLLOW_UP) + user.elements[0].text if user.elements[0].kind == "text" \
                        else user.elements[0].text
                turns += [user, assistant]
            out.append(Script(f"conv-{i:06d}", "+".join(chosen), turns))
        return out

    # each scenario returns (user turn, assistant turn)
    def _image_request(self, rng):
        item = rng.choice(self.images)
        c = _lower_first(item["caption"])
        return (ScriptTurn("user", [Element("text", rng.choice(ASK_IMAGE).format(c=c))]),
                ScriptTurn("assistant", [Element("text", rng.choice(GIVE_IMAGE)), Element("image", item["caption"], item["id"])]))

    def _image_question(self, rng):
        item = rng.choice(self.images)
        return (ScriptTurn("user", [Element("image", item["caption"], item["id"]), Element("text", rng.choice(ASK_ABOUT_IMAGE))]),
                ScriptTurn("assistant", [Element("text", rng.choice(ANSWER_IMAGE).format(c=_lower_first(item["caption"])) + ".")]))

    def _music_request(self, rng):
        item = rng.choice(self.music)
        c = _lower_first(item["caption"])
        return (ScriptTurn("user", [Element("text", rng.choice(ASK_MUSIC).format(c=c))]),
                ScriptTurn("assistant", [Element("text", rng.choice(GIVE_MUSIC)), Element("music", item["caption"], item["id"])]))

    def _music_question(self, rng):
        item = rng.choice(self.music)
        return (ScriptTurn("user", [Element("music", item["caption"], item["id"]), Element("text", rng.choice(ASK_ABOUT_MUSIC))]),
                ScriptTurn("assistant", [Element("text", rng.choice(ANSWER_MUSIC).format(c=_lower_first(item["caption"])) + ".")]))

    def _text_fact(self, rng):
        s = rng.choice(self.sentences)
        return (ScriptTurn("user", [Element("text", rng.choice(ASK_TEXT))]),
                ScriptTurn("assistant", [Element("text", rng.choice(ANSWER_TEXT).format(s=s))]))

    def _say_this(self, rng):
        s = rng.choice(self.sentences)
        return (ScriptTurn("user", [Element("text", rng.choice(ASK_SAY).format(s=s))]),
                ScriptTurn("assistant", [Element("text", rng.choice(GIVE_SPEECH)), Element("speech", s)]))

    def _spoken(self, cid: str, rng) -> Script:
        """Speech in ('Tell me something'), '<-Ins-> transcript <-Res-> reply' and the reply spoken."""
        request, fact = rng.choice(SPOKEN_REQUESTS), rng.choice(self.sentences)
        reply = rng.choice(ANSWER_TEXT).format(s=fact)
        return Script(cid, "spoken_instruction", [
            ScriptTurn("user", [Element("speech", request)]),
            ScriptTurn("assistant", [Element("text", request), Element("text", reply), Element("speech", reply)]),
        ], spoken=True)


def distinct_ngrams(texts: Sequence[str], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over the texts (words, lower-cased)."""
    grams: Counter = Counter()
    for t in texts:
        w = t.lower().split()
        grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def duplicate_share(scripts: Sequence[Script]) -> float:
    """Share of conversations whose full text equals another's."""
    keys = Counter("\n".join(s.texts()) for s in scripts)
    return sum(c for c in keys.values() if c > 1) / max(1, len(scripts))


def near_duplicate_share(scripts: Sequence[Script], threshold: float = 0.8, sample: int = 500, seed: int = 0) -> float:
    """Share of (up to `sample`) conversations whose word-3-gram Jaccard similarity to another
    one of the sample reaches `threshold`."""
    picked = random.Random(seed).sample(list(scripts), min(sample, len(scripts)))
    grams = []
    for s in picked:
        w = " ".join(s.texts()).lower().split()
        grams.append({tuple(w[i:i + 3]) for i in range(len(w) - 2)})
    near = 0
    for i, a in enumerate(grams):
        if any(len(a & b) / (len(a | b) or 1) >= threshold for j, b in enumerate(grams) if j != i):
            near += 1
    return near / max(1, len(grams))


def script_stats(scripts: Sequence[Script]) -> dict:
    """What `anygpt instruct write` reports: conversations, turns, scenario uses (a conversation
    chains 1-3), media elements per side and kind, distinct-1/2/3, identical and near-duplicate
    shares."""
    scenarios: Counter = Counter(part for s in scripts for part in s.scenario.split("+"))
    media: Counter = Counter(f"{t.role}_{e.kind}" for s in scripts for t in s.turns for e in t.elements
                             if e.kind != "text")
    texts = [t for s in scripts for t in s.texts()]
    return {"conversations": len(scripts), "spoken_instruction": sum(s.spoken for s in scripts),
            "turns": sum(len(s.turns) for s in scripts), "scenarios": dict(sorted(scenarios.items())),
            "media_elements": dict(sorted(media.items())),
            **{f"distinct_{n}": distinct_ngrams(texts, n) for n in (1, 2, 3)},
            "identical_share": duplicate_share(scripts), "near_duplicate_share": near_duplicate_share(scripts)}
