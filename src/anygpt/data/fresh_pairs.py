"""Fresh scene pairs, streamed: every training example is a scene never drawn before.

Drawn scenes (anygpt.data.scenes) render and tokenize at over a thousand a second, so a short
training run can see unique caption <-> image pairs instead of epochs of a fixed corpus; the
probe on image pairs found grounding grows with unique examples, not with epochs. Each pair is
one pretraining sample in the release's template (anygpt.templates.pretraining_pair), in a
direction drawn per sample, with a random instruction of that direction's pool.

Recipe switches a probe compares:
- answer_only: loss only on the answer half (the caption, or the image codes and end) instead
  of every token;
- cfg_drop: the share of text-to-image pairs whose caption is dropped (the condition empty),
  so the model also learns the unconditional image distribution that classifier-free guidance
  (anygpt.lm.guidance) needs;
- max_objects: 1 for a curriculum's first phase (one-object scenes), else up to 4.

`PairStream.block(block_len)` packs samples end to end into a training block (a sample may
run over into the next block, as in plain LM packing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from anygpt.data import scenes
from anygpt.data.packing import IGNORE
from anygpt.instructions import instruction_pool
from anygpt.parts import CodesPart
from anygpt.templates import pretraining_pair, pretraining_prompt

UNCONDITIONAL = ""  # the caption of a pair whose condition is dropped


def scene_tensor(specs: list[scenes.SceneSpec], size: int) -> torch.Tensor:
    """Scenes -> rendered images FloatTensor [B, 3, size, size] in [0, 1]."""
    arrays = np.stack([np.asarray(scenes.render_scene(s, size=size)) for s in specs])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0


def encode_scenes(tokenizer, specs: list[scenes.SceneSpec]) -> torch.Tensor:
    """Scenes -> LM-facing image codes LongTensor [B, K, T] of the image tokenizer."""
    with torch.inference_mode():
        return tokenizer.to_lm(tokenizer.encode(scene_tensor(specs, tokenizer.image_size[0])))


@dataclass
class PairOptions:
    answer_only: bool = False
    cfg_drop: float = 0.0
    to_text_share: float = 0.5  # share of pairs in the image -> text direction
    chunk: int = 64  # scenes rendered and encoded at once


def prompt_and_answer(codec, media: CodesPart, text: str, direction: str, instruction: str) -> tuple[list[int], int]:
    """One pair -> (ids with bos and eos, how many of them are the prompt: the answer starts
    there). The prompt is pretraining_prompt's, a prefix of the pair's ids by construction."""
    ids = codec.encode(pretraining_pair(media, text, direction, random.Random(0), instruction=instruction),
                       bos=True, eos=True).tolist()
    prompt = codec.encode(pretraining_prompt(direction, instruction, media=media, text=text), bos=True).tolist()
    if ids[:len(prompt)] != prompt:
        raise ValueError(f"the {direction} prompt is not a prefix of its pair; the templates disagree")
    return ids, len(prompt)


class PairStream:
    """An endless, seeded stream of fresh training pairs as (input_ids, labels) int arrays.

    codec: the LM's SequenceEncoder; tokenizer: the image tokenizer; max_objects may be
    changed between calls (a curriculum)."""

    def __init__(self, codec, tokenizer, options: PairOptions, seed: int = 0, max_objects: int = scenes.MAX_OBJECTS):
        self.codec, self.tokenizer, self.o = codec, tokenizer, options
        self.rng = random.Random(f"fresh-pairs/{seed}")
        self.max_objects = max_objects
        self.pairs_seen = 0
        self._pending: list[tuple[scenes.SceneSpec, torch.Tensor]] = []
        self._ids: list[int] = []
        self._labels: list[int] = []

    def _next_scene(self) -> tuple[scenes.SceneSpec, torch.Tensor]:
        if not self._pending:
            specs = [scenes.sample_scene(self.rng, heldout=False, max_objects=self.max_objects)
                     for _ in range(self.o.chunk)]
            self._pending = list(zip(specs, encode_scenes(self.tokenizer, specs)))[::-1]
        return self._pending.pop()

    def sample(self) -> tuple[list[int], list[int], str]:
        """One fresh pair -> (ids, labels, direction)."""
        spec, codes = self._next_scene()
        rng = self.rng
        direction = "to_text" if rng.random() < self.o.to_text_share else "from_text"
        text = scenes.caption(spec, rng)
        if direction == "from_text" and rng.random() < self.o.cfg_drop:
            text = UNCONDITIONAL
        instruction = rng.choice(instruction_pool("image", direction))
        ids, n_prompt = prompt_and_answer(self.codec, CodesPart("image", codes), text, direction, instruction)
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
