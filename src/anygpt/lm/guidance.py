"""Classifier-free guidance for a fixed-length media segment (LlamaGen, Parti).

Training drops the condition (the caption) from about 10% of text-to-media pairs, so the same
LM also models the media unconditionally. Decoding then runs two streams, the prompt with the
condition and the prompt without it, and mixes their next-token logits:

    guided = uncond + scale * (cond - uncond)

scale 1 is plain conditional decoding; scale > 1 pushes the segment towards what the condition
makes likelier than the unconditional model does. Both streams are fed the guided token.
"""

from __future__ import annotations

import torch


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """cond, uncond: FloatTensor [..., V] -> uncond + scale * (cond - uncond), same shape."""
    return uncond + scale * (cond - uncond)


class _Stream:
    """One prompt's KV cache on a HF causal LM: feed ids, read the last position's logits [V]."""

    def __init__(self, lm, ids: torch.Tensor):
        self.lm, self.past = lm, None
        self.logits = self.feed(ids)

    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.lm(input_ids=ids.view(1, -1).to(self.lm.device), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        self.logits = out.logits[0, -1].float()
        return self.logits


@torch.no_grad()
def guided_segment(lm, cond_ids: torch.Tensor, uncond_ids: torch.Tensor | None, code_range: tuple[int, int],
                   length: int, scale: float = 1.0) -> torch.Tensor:
    """Greedy decoding of `length` tokens, each restricted to the ids [lo, hi) of code_range,
    after the prompt cond_ids LongTensor [L] (ending with the segment's start marker); with
    scale != 1 the logits are mixed with those after uncond_ids LongTensor [L'] (cfg_logits).
    -> the written ids LongTensor [length] (LM ids, not codes)."""
    lo, hi = code_range
    cond = _Stream(lm, cond_ids)
    uncond = _Stream(lm, uncond_ids) if scale != 1.0 and uncond_ids is not None else None
    out = []
    for i in range(length):
        logits = cond.logits if uncond is None else cfg_logits(cond.logits, uncond.logits, scale)
        tok = lo + int(logits[lo:hi].argmax())
        out.append(tok)
        if i + 1 < length:
            step = torch.tensor([tok])
            cond.feed(step)
            if uncond is not None:
                uncond.feed(step)
    return torch.tensor(out, dtype=torch.long)
