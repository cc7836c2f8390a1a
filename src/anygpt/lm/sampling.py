"""Choosing the next token for a batch whose rows have their own settings and random streams.

Order of the logit transforms is HF generate's: repetition penalty, then the segment
constraint (applied by the caller between `penalise_` and `choose`), then temperature, top-k,
top-p, then sampling (or argmax for greedy rows). A row's randomness comes only from its own
torch.Generator: one uniform draw per step, turned into a token by inverse-CDF sampling, so a
request gives the same tokens whatever else shares its batch.

Every finite positive setting gives a distribution, however extreme: the penalty is kept inside
float32's normal range and its result clamped to finite values, and temperature divides logits
from which the row's maximum was subtracted (so 1e-45 overflows the others to -inf, never the
best one: the row becomes greedy, not NaN).
"""

from __future__ import annotations

from typing import Sequence

import torch

from anygpt.lm.generation import GenerationSettings


class RowSampling:
    """Per-row sampling parameters as tensors [B] (greedy rows: temperature 1, no filters)."""

    def __init__(self, settings: Sequence[GenerationSettings], device: torch.device | str = "cpu"):
        f32 = dict(dtype=torch.float32, device=device)
        self.do_sample = torch.tensor([s.do_sample for s in settings], dtype=torch.bool, device=device)
        self.temperature = torch.tensor([s.temperature if s.do_sample else 1.0 for s in settings], **f32)
        self.top_k = torch.tensor([s.top_k if s.do_sample else 0 for s in settings], dtype=torch.long, device=device)
        self.top_p = torch.tensor([s.top_p if s.do_sample else 1.0 for s in settings], **f32)
        tiny, huge = torch.finfo(torch.float32).tiny, torch.finfo(torch.float32).max
        self.penalty = torch.tensor([s.repetition_penalty for s in settings], **f32).clamp(tiny, huge)
        self.temperature = self.temperature.clamp(min=tiny)
        self.any_sample = bool(self.do_sample.any())
        self.all_sample = bool(self.do_sample.all())
        self.any_penalty = bool((self.penalty != 1.0).any())
        self.any_temperature = bool((self.temperature != 1.0).any())
        self.max_top_k = int(self.top_k.max()) if len(settings) else 0
        self.any_top_p = bool((self.top_p < 1.0).any())

    def penalise_(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """HF's repetition penalty on the ids each row has seen (seen: BoolTensor [B, V]):
        negative logits are multiplied by the penalty, positive ones divided. In place."""
        if not self.any_penalty:
            return logits
        p = self.penalty[:, None]
        big = torch.finfo(logits.dtype).max
        penalised = torch.where(logits < 0, logits * p, logits / p).clamp_(-big, big)
        return torch.where(seen, penalised, logits, out=logits)

    def choose(self, logits: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """logits FloatTensor [B, V] (already penalised and masked) -> tokens LongTensor [B]."""
        if not self.any_sample:
            return logits.argmax(dim=-1)
        if self.any_temperature:
            top = logits.amax(dim=-1, keepdim=True)  # amax: several times faster than max's values on CPU
            top = torch.where(top.isfinite(), top, torch.zeros_like(top))  # a row of -inf stays one
            x = (logits - top) / self.temperature[:, None]
        else:
            x = logits
        v = x.shape[-1]
        if self.max_top_k > 0:
            kmax = min(self.max_top_k, v)
            top = x.topk(kmax, dim=-1).values  # [B, kmax] descending
            k = self.top_k.clamp(max=kmax)
            kth = top.gather(1, (k - 1).clamp(min=0)[:, None])
            kth = torch.where(k[:, None] > 0, kth, torch.full_like(kth, float("-inf")))
            x = x.masked_fill(x < kth, float("-inf"))
        if self.any_top_p:
            sorted_x, order = x.sort(dim=-1)  # ascending, as HF's TopPLogitsWarper
            cum = sorted_x.softmax(dim=-1).cumsum(dim=-1)
            drop = cum <= (1 - self.top_p)[:, None]
            drop[:, -1] = False  # keep at least one token
            x = x.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        probs = x.softmax(dim=-1)
        cdf = probs.cumsum(dim=-1)
        u = torch.stack([torch.rand((), generator=g) for g in generators]).to(cdf.device)
        tokens = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0].clamp(max=v - 1)
        # float rounding can land on a zero-probability id at the end of the CDF
        bad = probs.gather(1, tokens[:, None])[:, 0] <= 0
        if bad.any():  # (argmax over the vocabulary costs more than the rest of a step's sampling)
            tokens = torch.where(bad, probs.argmax(dim=-1), tokens)
        if self.all_sample:
            return tokens
        return torch.where(self.do_sample, tokens, logits.argmax(dim=-1))
