"""Fresh pairs, streamed: every training example is new (a scene never drawn, a sentence
spoken anew).

Drawn scenes (anygpt.data.scenes) render and tokenize at over a thousand a second, so a short
training run can see unique caption <-> image pairs instead of epochs of a fixed corpus; the
probe on image pairs found grounding grows with unique examples, not with epochs. Speech pairs
are sentences of the text sources (WordNet glosses and examples, train split) spoken by a flite
voice on the fly (a few a second). Each pair is one pretraining sample in the release's
template (anygpt.templates.pretraining_pair), in a direction drawn per sample, with a random
instruction of that direction's pool; sources are mixed by weight.

Recipe switches a probe compares:
- SceneSource(pool=N): N scenes drawn once and repeated, as a corpus does, against every scene
  new;
- answer_only: loss only on the answer half (the caption, or the image codes and end) instead
  of every token;
- cfg_drop: the share of text-to-image pairs whose caption is dropped (the condition empty),
  so the model also learns the unconditional image distribution that classifier-free guidance
  (anygpt.lm.guidance) needs;
- a curriculum's first phase: SceneSource.max_objects = 1 (one-object scenes),
  SpokenSource.max_words small (short sentences).

`PairStream.block(block_len)` packs samples end to end into a training block (a sample may
run over into the next block, as in plain LM packing).
"""

from __future__ import annotations

import functools
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anygpt.data import scenes
from anygpt.data.packing import IGNORE
from anygpt.data.pretraining import UNCONDITIONAL
from anygpt.errors import UsageError
from anygpt.instructions import instruction_pool
from anygpt.parts import CodesPart
from anygpt.templates import pretraining_pair, pretraining_prompt


def scene_tensor(specs: list[scenes.SceneSpec], size: int) -> torch.Tensor:
    """Scenes -> rendered images FloatTensor [B, 3, size, size] in [0, 1]."""
    arrays = np.stack([np.asarray(scenes.render_scene(s, size=size)) for s in specs])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0


def encode_scenes(tokenizer, specs: list[scenes.SceneSpec]) -> torch.Tensor:
    """Scenes -> LM-facing image codes LongTensor [B, K, T] of the image tokenizer."""
    with torch.inference_mode():
        return tokenizer.encode_lm(scene_tensor(specs, tokenizer.image_size[0]))


@dataclass
class PairOptions:
    answer_only: bool = False
    cfg_drop: float = 0.0
    to_text_share: float = 0.5  # share of pairs in the media -> text direction


class SceneSource:
    """Fresh training scenes (no held-out pair) -> (caption, image codes); `chunk` scenes are
    rendered and encoded at once. exclude: scenes never drawn (the evaluation's: there are
    only about a thousand one-object scenes, so a stream would soon show them). pool: draw
    from this many scenes, fixed at the start and repeated, as a corpus does (0: every scene
    new), to measure unique data against epochs."""

    modality = "image"

    def __init__(self, tokenizer, seed: int = 0, chunk: int = 64, max_objects: int = scenes.MAX_OBJECTS,
                 exclude: frozenset = frozenset(), pool: int = 0):
        self.tokenizer, self.chunk, self.max_objects, self.exclude = tokenizer, chunk, max_objects, exclude
        self.rng = random.Random(f"fresh-scenes/{seed}")
        self._pending: list[tuple[scenes.SceneSpec, torch.Tensor]] = []
        self.pool = [self._new_scene(scenes.MAX_OBJECTS) for _ in range(pool)]
        self._fitting: dict[int, list[scenes.SceneSpec]] = {}  # max_objects -> the pool's scenes within it

    def _new_scene(self, max_objects: int) -> scenes.SceneSpec:
        while True:
            spec = scenes.sample_scene(self.rng, heldout=False, max_objects=max_objects)
            if spec not in self.exclude:
                return spec

    def _draw(self) -> scenes.SceneSpec:
        if not self.pool:
            return self._new_scene(self.max_objects)
        if self.max_objects not in self._fitting:
            self._fitting[self.max_objects] = [s for s in self.pool if len(s.objects) <= self.max_objects]
        fitting = self._fitting[self.max_objects]
        if not fitting:
            raise UsageError(f"SceneSource: no scene of the pool of {len(self.pool)} has at most "
                             f"{self.max_objects} objects; use a larger pool")
        return self.rng.choice(fitting)

    def next_scene(self) -> tuple[scenes.SceneSpec, torch.Tensor]:
        if not self._pending or any(len(spec.objects) > self.max_objects for spec, _ in self._pending):
            specs = [self._draw() for _ in range(self.chunk)]
            self._pending = list(zip(specs, encode_scenes(self.tokenizer, specs)))[::-1]
        return self._pending.pop()

    def next(self) -> tuple[str, CodesPart]:
        spec, codes = self.next_scene()
        return scenes.caption(spec, self.rng), CodesPart("image", codes)


FLITE_VOICES = ("kal", "rms", "slt", "awb")


@functools.lru_cache(maxsize=8)
def speakable_sentences(split: str, min_words: int = 4, max_words: int = 12) -> tuple[str, ...]:
    """WordNet sentences (glosses, examples) of one text split (anygpt.data.corpora.text:
    train / val / test by a hash of the text) that TTS reads without surprises."""
    from anygpt.data.corpora.text import speakable, text_split, wordnet_items

    return tuple(t for t, _, _ in wordnet_items() if speakable(t, min_words, max_words) and text_split(t) == split)


def speak(tokenizer, text: str, voice: str, folder: Path) -> torch.Tensor:
    """One sentence spoken by a flite voice -> LM-facing speech codes LongTensor [K, T]."""
    from anygpt.data.corpora.speech import synthesise

    wav = synthesise("flite", voice, text, folder / "say.wav")
    return tokenizer.encode_item(tokenizer.load(wav))


class SpokenSource:
    """Sentences of the train split, each spoken anew by a random flite voice -> (sentence,
    speech codes). max_words: the longest sentence drawn (a curriculum starts short)."""

    modality = "speech"

    def __init__(self, tokenizer, seed: int = 0, max_words: int = 12, voices: tuple[str, ...] = FLITE_VOICES[:3]):
        self.tokenizer, self.max_words, self.voices = tokenizer, max_words, voices
        self.rng = random.Random(f"fresh-speech/{seed}")
        self.sentences = speakable_sentences("train")
        self._tmp = tempfile.TemporaryDirectory(prefix="anygpt-speak-")

    def next(self) -> tuple[str, CodesPart]:
        while True:
            text = self.rng.choice(self.sentences)
            if len(text.split()) <= self.max_words:
                break
        return text, CodesPart("speech", speak(self.tokenizer, text, self.rng.choice(self.voices), Path(self._tmp.name)))


def prompt_and_answer(encoder, media: CodesPart, text: str, direction: str, instruction: str) -> tuple[list[int], int]:
    """One pair -> (ids with bos and eos, how many of them are the prompt: the answer starts
    there). The prompt is pretraining_prompt's, a prefix of the pair's ids by construction."""
    ids = encoder.encode(pretraining_pair(media, text, direction, random.Random(0), instruction=instruction),
                       bos=True, eos=True).tolist()
    prompt = encoder.encode(pretraining_prompt(direction, instruction, media=media, text=text), bos=True).tolist()
    if ids[:len(prompt)] != prompt:
        raise ValueError(f"the {direction} prompt is not a prefix of its pair; the templates disagree")
    return ids, len(prompt)


class PairStream:
    """An endless, seeded stream of fresh training pairs as (input_ids, labels) int arrays.

    encoder: the LM's SequenceEncoder; sources: (source, weight) pairs, a source being a
    SceneSource or SpokenSource (anything with `modality` and `next() -> (text, CodesPart)`);
    each pair comes from a source drawn by weight."""

    def __init__(self, encoder, sources: list[tuple[object, float]], options: PairOptions, seed: int = 0):
        self.encoder, self.sources, self.o = encoder, sources, options
        self.rng = random.Random(f"fresh-pairs/{seed}")
        self.pairs_seen = 0
        self._ids: list[int] = []
        self._labels: list[int] = []

    def sample(self) -> tuple[list[int], list[int], str]:
        """One fresh pair -> (ids, labels, direction)."""
        rng = self.rng
        source = self.sources[0][0] if len(self.sources) == 1 else \
            rng.choices([s for s, _ in self.sources], weights=[w for _, w in self.sources])[0]
        text, media = source.next()
        direction = "to_text" if rng.random() < self.o.to_text_share else "from_text"
        if direction == "from_text" and rng.random() < self.o.cfg_drop:
            text = UNCONDITIONAL
        instruction = rng.choice(instruction_pool(media.modality, direction))
        ids, n_prompt = prompt_and_answer(self.encoder, media, text, direction, instruction)
        labels = [IGNORE] * n_prompt + ids[n_prompt:] if self.o.answer_only else list(ids)
        self.pairs_seen += 1
        return ids, labels, direction

    def block(self, block_len: int) -> tuple[np.ndarray, np.ndarray]:
        """The next block_len tokens of the packed stream -> (ids, labels) int64 [block_len]."""
        while len(self._ids) < block_len:
            ids, labels, _ = self.sample()
            self._ids += ids
            self._labels += labels
        ids, labels = self._ids[:block_len], self._labels[:block_len]
        self._ids, self._labels = self._ids[block_len:], self._labels[block_len:]
        return np.asarray(ids, dtype=np.int64), np.asarray(labels, dtype=np.int64)
