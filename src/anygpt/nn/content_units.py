"""Voice-free content units: the planned layer 1 of our speech tokenizer (issue 23).

ContentVec (arXiv 2204.09224) makes HuBERT-style units speaker-invariant by training on the
same content in different voices. Our corpus can speak any sentence in many voices, so the
same signal is free here:

    Whisper tiny.en encoder frames [T, 384] (anygpt.nn.speech_data.WhisperEncoder, pooled to
    the code rate)
      -> utterance normalisation (each dimension to zero mean, unit variance over the clip:
         removes the speaker's constant offset)
      -> projection: MLP 384 -> hidden -> dim, unit length, trained with InfoNCE so that frames
         of one sentence in two voices, aligned by DTW, are nearer than any other frame of the batch
      -> nearest of K centroids (k-means on projected training frames)     units LongTensor [T]

Measured on 12 voices (8 espeak-ng, 4 flite) x 12 sentences, the units fitted on 48 other
sentences in the same voices, 25 frames per second (`python benchmarks/code_predictability.py
--skip image --skip music --units 128 --units 256`; normalised edit distance of the same
sentence in two voices / of two sentences in one voice; speaker probe, chance 0.083):

| layer 1 | same sentence | two sentences | speaker probe |
|---|---|---|---|
| shipped codec (speech-tokenizer-tiny) | 0.841 | 0.878 | 0.562 |
| k-means of Whisper features, 128 / 256 | 0.381 / 0.384 | 0.860 / 0.915 | 0.396 / 0.438 |
| content units, 128 / 256 | 0.318 / 0.272 | 0.963 / 0.986 | 0.125 / 0.083 |

The codec's layer 1 with `layer1: "units"` (anygpt.nn.speech_codec; `anygpt train
speech-tokenizer --layer1 units` fits them on --unit-sentences corpus sentences in its 36
UNIT_VOICES, none of them a benchmark voice). The table above fits on other sentences made of
the benchmark's own half-sentences; fitted on corpus sentences (WordNet glosses), whose words
are mostly not the benchmark's, the same sentence in two voices is 0.571 / 0.541 / 0.522 apart
with 48 / 96 / 192 fitting sentences (two sentences 0.916 / 0.917 / 0.910, speaker probe 0.167 /
0.229 / 0.146): the projection is voice-free on words it was fitted on and less so on new ones,
and more sentences close that gap slowly (`python benchmarks/code_predictability.py --skip image
--skip music --units 256 --units-voices trainer --units-corpus data/tiny --units-sentences N`;
the shipped tokenizer is the 48: `--speech units`).

What the gap is not: speaking rate. The shipped units' same-sentence clips differ in length by
0.056 on average (1 - shorter / longer), and with each run of one unit collapsed to one token the
distance is 0.582 rather than 0.571: the units disagree on content frames, not on how long each
lasts. What helps is words: fitted on 1,000 corpus sentences each spoken in 4 voices drawn per
sentence (4,000 clips, fewer than 192 x 36 = 6,912), the same sentence in two voices is 0.484
apart (two sentences 0.895, speaker probe 0.229; the three espeak-ng pairs of issue 23 0.31,
0.31, 0.36), against 0.522 for 192 sentences in all 36 voices (`python
benchmarks/code_predictability.py --skip image --skip music --speech units --units 256
--units-voices trainer --units-corpus data/tiny --units-sentences 1000
--units-voices-per-sentence 4`, which also prints the length gap and the collapsed distance).
`anygpt train speech-tokenizer --unit-sentences N --unit-voices V` fits the codec's units so.

Phone units (objective "phones", 2026-12-04): the same projection, with `context` frames either
side, trained with CTC to read the text's phonemes (espeak-ng's, anygpt.data.corpora.speech.phonemes;
allophone marks folded, PHONES); a frame's unit is its most likely phone, a blank frame taking
the phone before it. The target is the same for every voice by construction, and phones are
shared by all words, so it does not have to generalise from the fitting sentences' words.
Fitted on the same 1,000 corpus sentences x 4 voices (context 2), the same sentence in two
voices is 0.348 apart where the cross-voice projection gives 0.469; two sentences in one voice
0.905; the speaker probe 0.083, chance (`python benchmarks/code_predictability.py --skip image
--skip music --speech units --units 256 --units-objective voices --units-objective phones
--units-voices trainer --units-corpus data/tiny --units-sentences 1000 --units-voices-per-sentence 4`).
Without the allophone folding and with 2,000 sentences x 6 voices the figure was 0.354
(a scratch run): more fitting speech no longer moves it much.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# espeak-ng's en-us phoneme mnemonics as anygpt.data.corpora.speech.phonemes gives them, with its
# allophone marks folded (FOLD): the phone units' classes, in a fixed order (unit id = index)
PHONES = ("n", "t", "I", "s", "d", "@", "r", "k", "l", "m", "V", "z", "v", "p", "a", "E", "D", "a#", "3", "b",
          "eI", "f", "N", "w", "aI", "i:", "O@", "u:", "i", "h", "oU", "S", "@L", "0", "g", "j", "3:", "dZ", "tS",
          "aU", "O:", "A@", "U", "T", "o@", "O2", "e@", "aa", "i@", "U@", "OI", "Z", "A:", "aI@", "?")
FOLD = {"I2": "I", "I#": "I", "@2": "@", "@-": "@", "t#": "t", "t2": "t", "r-": "r", "n-": "n", "i@3": "i@",
        "aI3": "aI"}
_PHONE_ID = {p: i for i, p in enumerate(PHONES)}


def phone_ids(phonemes: Sequence[str]) -> list[int]:
    """espeak-ng mnemonics -> unit ids (FOLD applied); a phoneme outside PHONES is left out."""
    return [_PHONE_ID[q] for q in (FOLD.get(p, p) for p in phonemes) if q in _PHONE_ID]


@dataclass
class ContentUnitsConfig:
    """Sizes of the projection and the number of units. objective: "voices" (InfoNCE across
    voices, then k-means into `units` centroids) or "phones" (CTC on the text's phonemes; units
    is then len(PHONES)); context: frames either side fed to the projection with each frame."""

    input_dim: int = 384
    hidden: int = 256
    dim: int = 64
    units: int = 256
    temperature: float = 0.1
    seed: int = 0
    objective: str = "voices"
    context: int = 0

    def __post_init__(self):
        if self.objective not in ("voices", "phones"):
            raise ValueError(f"objective must be 'voices' or 'phones', got {self.objective!r}")
        if self.objective == "phones" and self.units != len(PHONES):
            raise ValueError(f"phone units: units must be len(PHONES) = {len(PHONES)}, got {self.units}")


def utterance_norm(feats: np.ndarray) -> np.ndarray:
    """[T, D] -> [T, D]: every dimension to zero mean and unit variance over the clip."""
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-5)


def dtw_path(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Cosine-cost dynamic time warping of [Ta, D] against [Tb, D] -> aligned (i, j) pairs, in
    order, from (0, 0) to (Ta - 1, Tb - 1)."""
    an = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-8)
    bn = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-8)
    cost = 1.0 - an @ bn.T
    ta, tb = cost.shape
    acc = np.full((ta + 1, tb + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, ta + 1):
        row, prev, cur = cost[i - 1], acc[i - 1], acc[i]
        for j in range(1, tb + 1):
            cur[j] = row[j - 1] + min(prev[j], cur[j - 1], prev[j - 1])
    i, j, path = ta, tb, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


class ContentUnits(nn.Module):
    """Projection + centroids ("voices") or + phone head ("phones"). forward: frames [B, D_in x
    (2 context + 1)] (see frames()) -> unit vectors [B, dim]; units(): one clip's raw features
    [T, D_in] -> LongTensor [T]."""

    def __init__(self, cfg: ContentUnitsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        width = cfg.input_dim * (2 * cfg.context + 1)
        self.proj = nn.Sequential(nn.Linear(width, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.dim))
        if cfg.objective == "phones":  # unit vectors -> logits [B, 1 + len(PHONES)] (0: CTC's blank)
            self.head = nn.Linear(cfg.dim, 1 + len(PHONES))
            self.register_buffer("scale", torch.tensor(10.0))  # unit vectors' logits need a scale
        else:
            self.register_buffer("centroids", torch.zeros(cfg.units, cfg.dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(frames), dim=-1)

    def frames(self, feats: np.ndarray) -> torch.Tensor:
        """One clip's raw features [T, D_in] -> the projection's input [T, D_in x (2 context + 1)]:
        utterance-normalised, each frame with its `context` neighbours either side (edges repeated)."""
        x = utterance_norm(feats).astype(np.float32)
        c = self.cfg.context
        if c:
            padded = np.pad(x, ((c, c), (0, 0)), mode="edge")
            x = np.concatenate([padded[i:i + len(x)] for i in range(2 * c + 1)], axis=1)
        return torch.from_numpy(x)

    def phone_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z) * self.scale

    def code_vectors(self) -> torch.Tensor:
        """[units, dim]: a vector per unit, in the units' space: the centroids, or each phone's
        row of the phone head (blank left out)."""
        return self.head.weight[1:] if self.cfg.objective == "phones" else self.centroids

    @torch.no_grad()
    def units(self, feats: np.ndarray) -> torch.Tensor:
        z = self(self.frames(feats))
        if self.cfg.objective == "voices":
            return (z @ self.centroids.t()).argmax(-1)
        best = self.phone_logits(z).argmax(-1)  # [T], 0 = blank
        # a blank frame continues the phone before it (the first phones' blanks take the first)
        seen = torch.cummax(torch.where(best > 0, torch.arange(len(best)), -1), 0).values
        if bool((best > 0).any()):
            seen = torch.where(seen < 0, int((best > 0).nonzero()[0]), seen)
            return best[seen] - 1
        return torch.zeros_like(best)


def aligned_pairs(clips: dict[tuple[str, int], np.ndarray], pairs_per_sentence: int, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """clips: (voice, sentence) -> raw features [T, D]. For each sentence, `pairs_per_sentence`
    random pairs of its voices (at most as many as it has pairs) are DTW-aligned -> (A, B)
    FloatTensors [P, D] of aligned frames (utterance-normalised)."""
    rng = np.random.default_rng(seed)
    by_sentence: dict[int, list[str]] = {}
    for voice, sentence in sorted(clips):
        by_sentence.setdefault(sentence, []).append(voice)
    a_rows, b_rows = [], []
    for sentence, voices in by_sentence.items():
        if len(voices) < 2:
            continue
        for _ in range(min(pairs_per_sentence, len(voices) * (len(voices) - 1) // 2)):
            va, vb = rng.choice(voices, size=2, replace=False)
            fa, fb = utterance_norm(clips[(va, sentence)]), utterance_norm(clips[(vb, sentence)])
            for i, j in dtw_path(fa, fb):
                a_rows.append(fa[i])
                b_rows.append(fb[j])
    if not a_rows:
        raise ValueError("content units need at least one sentence spoken in two voices")
    return torch.from_numpy(np.stack(a_rows).astype(np.float32)), torch.from_numpy(np.stack(b_rows).astype(np.float32))


def sentence_voices(voices: Sequence, per_sentence: int | None, sentence: int, seed: int = 0) -> list:
    """The voices one fitting sentence is spoken in: all of `voices` (per_sentence None), or
    `per_sentence` of them drawn for this sentence, the same on every run."""
    if per_sentence is None or per_sentence >= len(voices):
        return list(voices)
    return random.Random(f"unit-voices-{seed}-{sentence}").sample(list(voices), per_sentence)


def kmeans(x: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Spherical k-means of unit rows [N, d] -> unit centroids [k, d]."""
    gen = torch.Generator().manual_seed(seed)
    c = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        idx = (x @ c.t()).argmax(1)
        sums = torch.zeros_like(c).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k)
        c = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), c)
    return c


def train_content_units(clips: dict[tuple[str, int], np.ndarray], cfg: ContentUnitsConfig = ContentUnitsConfig(),
                        *, epochs: int = 15, pairs_per_sentence: int = 12, batch: int = 512, lr: float = 1e-3,
                        phonemes: dict[int, Sequence[str]] | None = None) -> ContentUnits:
    """Fit the projection on DTW-aligned cross-voice frames (InfoNCE, both directions), then the
    centroids by k-means on the projected frames of every clip. Objective "phones": see
    train_phone_units (phonemes: sentence -> its espeak-ng phonemes)."""
    if cfg.objective == "phones":
        if phonemes is None:
            raise ValueError("phone units need each sentence's phonemes")
        return train_phone_units(clips, phonemes, cfg)
    if cfg.context:
        raise ValueError("context frames are for phone units only")
    a, b = aligned_pairs(clips, pairs_per_sentence, cfg.seed)
    model = ContentUnits(cfg)
    opt = torch.optim.AdamW(model.proj.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(a), generator=gen).split(batch):
            za, zb = model(a[idx]), model(b[idx])
            logits = za @ zb.t() / cfg.temperature
            target = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        frames = torch.cat([model(torch.from_numpy(utterance_norm(f).astype(np.float32))) for f in clips.values()])
        model.centroids.copy_(kmeans(frames, cfg.units, seed=cfg.seed))
    return model.eval()


def train_phone_units(clips: dict[tuple[str, int], np.ndarray], phonemes: dict[int, Sequence[str]],
                      cfg: ContentUnitsConfig, *, epochs: int = 10, batch: int = 32, lr: float = 2e-3) -> ContentUnits:
    """clips: (voice, sentence) -> raw features [T, D]; phonemes: sentence -> its espeak-ng
    phonemes. The projection and phone head are fitted with CTC (a one-cycle schedule), each clip
    read against its sentence's phones; clips with more phones than frames are left out."""
    model = ContentUnits(cfg)
    data = [(model.frames(f), torch.tensor(phone_ids(phonemes[s]))) for (_, s), f in sorted(clips.items())]
    data = [(x, y) for x, y in data if 0 < len(y) < len(x)]
    if not data:
        raise ValueError("phone units need clips with phonemes and more frames than phones")
    opt = torch.optim.AdamW(list(model.proj.parameters()) + list(model.head.parameters()), lr=lr)
    steps = epochs * max(1, len(data) // batch)
    # one cycle; its warm-up must span 2 steps or more (a smoke run's few steps: a larger share)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 4),
                                                   pct_start=max(0.1, 2 / max(steps, 4)))
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=gen).tolist()
        for i in range(0, len(order) - batch + 1 if len(order) >= batch else 1, batch):
            xs, ys = zip(*(data[j] for j in order[i:i + batch]))
            x = nn.utils.rnn.pad_sequence(list(xs), batch_first=True)  # [B, T, width]
            logp = F.log_softmax(model.phone_logits(model(x)), dim=-1).transpose(0, 1)  # [T, B, 1 + P]
            loss = F.ctc_loss(logp, torch.cat(ys) + 1, torch.tensor([len(t) for t in xs]),
                              torch.tensor([len(t) for t in ys]), blank=0, zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    return model.eval()
