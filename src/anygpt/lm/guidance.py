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

from anygpt.lm.generation import GenerationSettings


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """cond, uncond: FloatTensor [..., V] -> uncond + scale * (cond - uncond), same shape."""
    return uncond + scale * (cond - uncond)


class _Stream:
    """One prompt's KV cache on a network with LeanLlama's interface (anygpt.lm.llama_static:
    new_cache(batch, capacity), forward(ids [1, T], positions [1, T], cache) -> logits [1, V]);
    feed ids, read the last position's logits FloatTensor [V]."""

    def __init__(self, network, ids: torch.Tensor, capacity: int):
        self.network, self.cache, self.length = network, network.new_cache(1, capacity), 0
        self.feed(ids)

    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.view(1, -1).to(self.network.device)
        positions = torch.arange(self.length, self.length + ids.shape[1], device=ids.device).view(1, -1)
        self.logits = self.network(ids, positions, self.cache)[0].float()
        self.length += ids.shape[1]
        return self.logits


@torch.inference_mode()
def guided_segment(network, cond_ids: torch.Tensor, uncond_ids: torch.Tensor | None, code_range: tuple[int, int],
                   length: int, scale: float = 1.0, settings: GenerationSettings | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Decode `length` tokens, each restricted to the ids [lo, hi) of code_range, after the
    prompt cond_ids LongTensor [L] (ending with the segment's start marker); with scale != 1
    the logits are mixed with those after uncond_ids LongTensor [L'] (cfg_logits). settings:
    temperature / top-k / top-p sampling as the engine does it (anygpt.lm.sampling; default
    greedy), drawn from `generator`. network: see _Stream (an engine's `model`).
    -> the written ids LongTensor [length] (LM ids, not codes)."""
    from anygpt.lm.sampling import RowSampling

    lo, hi = code_range
    sampling = RowSampling([settings or GenerationSettings(do_sample=False)])
    cond = _Stream(network, cond_ids, len(cond_ids) + length)
    uncond = _Stream(network, uncond_ids, len(uncond_ids) + length) \
        if scale != 1.0 and uncond_ids is not None else None
    out = []
    for i in range(length):
        logits = cond.logits if uncond is None else cfg_logits(cond.logits, uncond.logits, scale)
        allowed = torch.full_like(logits, float("-inf"))
        allowed[lo:hi] = logits[lo:hi]
        tok = int(sampling.choose(allowed[None], [generator])[0])
        out.append(tok)
        if i + 1 < length:
            step = torch.tensor([tok])
            cond.feed(step)
            if uncond is not None:
                uncond.feed(step)
    return torch.tensor(out, dtype=torch.long)
