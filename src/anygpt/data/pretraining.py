"""Pretraining samples as in the paper: text-centric pairs with the direction drawn per sample,
interleaved documents (text with media in place), and pure text. Loss on every token.

Each sample is a list of parts (anygpt.templates), encoded with the LM's SequenceEncoder into
ids with the LM's bos and eos around it.

Audio whose text describes the whole piece (music and its caption) may be given as an excerpt:
a random run of whole frames of the clip's codes [K, T], cut before the codebooks are
interleaved, so an excerpt is exactly codes[:, t:t+L] of the source. The release likewise
trains on 5-second excerpts of longer music. Excerpts of varied length also let blocks fill:
clips of one length pack no better than whole multiples of it.

For classifier-free guidance (anygpt.lm.guidance) a share of the text-to-media pairs may have
their condition dropped: the caption becomes UNCONDITIONAL, so the same LM also learns the
media's unconditional distribution that guided decoding mixes against.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

import torch

from anygpt.data.packing import Sample
from anygpt.lm.sequence import SequenceEncoder
from anygpt.parts import CodesPart, Part, TextPart
from anygpt.templates import pretraining_pair

CONNECTORS = {
    "image": ["Here is {text}.", "The next picture shows {text}.", "This one is {text}.", "Look: {text}.",
              "Another image: {text}.", "Below, {text}."],
    "music": ["The next piece is {text}.", "Listen to this: {text}.", "Here, {text}.", "Then comes {text}.",
              "This excerpt is {text}."],
    "speech": ["Someone says: {text}", "The next speaker says: {text}", "Then we hear: {text}"],
}


UNCONDITIONAL = ""  # the text of a text-to-media pair whose condition is dropped

# modalities an excerpt would break, and why
NO_EXCERPTS = {"speech": "a transcript must match the whole utterance",
               "image": "an image has a fixed number of codes"}


def excerpt_frames(seconds: tuple[float, float], frames: int, duration: float) -> tuple[int, int]:
    """Excerpt bounds in seconds -> in frames of an item of `frames` frames lasting `duration` s
    (its frame rate is frames / duration): (lo, hi) with 1 <= lo and hi <= frames."""
    lo_s, hi_s = seconds
    if not 0 < lo_s <= hi_s:
        raise ValueError(f"excerpt seconds must be 0 < min <= max, got {list(seconds)}")
    if duration <= 0:
        raise ValueError(f"item duration must be positive to cut excerpts in seconds, got {duration}")
    rate = frames / duration
    lo = min(frames, max(1, round(lo_s * rate)))
    return lo, min(frames, max(lo, round(hi_s * rate)))


def excerpt(codes: torch.Tensor, bounds: tuple[int, int], rng: random.Random) -> tuple[torch.Tensor, int]:
    """codes LongTensor [K, T] -> (codes[:, t:t+L], t): L uniform in bounds (frames, clipped to
    T), t uniform over the positions where it fits. Whole frames only: every codebook is cut
    at the same frame. An item no longer than bounds[0] frames is returned whole (t = 0)."""
    t_all = codes.shape[1]
    lo, hi = min(bounds[0], t_all), min(bounds[1], t_all)
    if lo >= t_all:
        return codes, 0
    n = rng.randint(lo, hi)
    t = rng.randint(0, t_all - n)
    return codes[:, t:t + n], t


def full_loss(ids) -> Sample:
    return Sample(ids.numpy(), ids.numpy())


def pair_samples(items: Iterable[tuple[str, CodesPart]], encoder: SequenceEncoder, rng: random.Random,
                 x2text_prob: float = 0.5, cfg_drop: float = 0.0) -> Iterator[tuple[Sample, str]]:
    """items: (text, media codes) -> (sample, direction) with direction 'to_text' with
    probability x2text_prob, else 'from_text' (the release's x2text_prob); a from_text pair's
    text is dropped (UNCONDITIONAL, direction 'unconditional') with probability cfg_drop.
    cfg_drop 0 draws nothing extra from rng, so such samples stay what they were."""
    for text, media in items:
        direction = "to_text" if rng.random() < x2text_prob else "from_text"
        label = direction
        if direction == "from_text" and cfg_drop > 0 and rng.random() < cfg_drop:
            text, label = UNCONDITIONAL, "unconditional"
        yield full_loss(encoder.encode(pretraining_pair(media, text, direction, rng), bos=True, eos=True)), label


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].lower() + text[1:].rstrip(".") if text else text


def interleaved_samples(items: Iterable[tuple[str, CodesPart]], encoder: SequenceEncoder, rng: random.Random,
                        per_document: tuple[int, int] = (2, 4)) -> Iterator[Sample]:
    """Documents of a few media items, each introduced by its description:
    'Here is a red circle. <soim>...<eoim> The next picture shows ...'."""
    buf: list[tuple[str, CodesPart]] = []
    want = rng.randint(*per_document)
    for item in items:
        buf.append(item)
        if len(buf) == want:
            yield _document(buf, encoder, rng)
            buf, want = [], rng.randint(*per_document)
    if buf:
        yield _document(buf, encoder, rng)


def _document(items: list[tuple[str, CodesPart]], encoder: SequenceEncoder, rng: random.Random) -> Sample:
    parts: list[Part] = []
    for i, (text, media) in enumerate(items):
        intro = rng.choice(CONNECTORS.get(media.modality, ["{text}:"])).format(text=_sentence(text))
        parts += [TextPart((" " if i else "") + intro + " "), media]
    return full_loss(encoder.encode(parts, bos=True, eos=True))


def text_samples(texts: Iterable[str], encoder: SequenceEncoder) -> Iterator[Sample]:
    for t in texts:
        yield full_loss(encoder.encode([TextPart(t)], bos=True, eos=True))
