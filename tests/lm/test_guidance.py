"""Classifier-free guidance: the logit mixing on handmade numbers, and guided decoding."""

from __future__ import annotations

import pytest
import torch

from anygpt.lm.generation import GenerationSettings, GenerationSettingsError
from anygpt.lm.guidance import cfg_logits, guided_segment


def test_cfg_logits_on_a_handmade_case():
    cond = torch.tensor([2.0, 1.9, 0.0])
    uncond = torch.tensor([2.0, 0.0, 1.0])
    # uncond + s * (cond - uncond) with s = 2: [2 + 2*0, 0 + 2*1.9, 1 + 2*(-1)]
    assert torch.allclose(cfg_logits(cond, uncond, 2.0), torch.tensor([2.0, 3.8, -1.0]))
    assert torch.equal(cfg_logits(cond, uncond, 1.0), cond)
    assert torch.equal(cfg_logits(cond, uncond, 0.0), uncond)
    # guidance flips the choice: the conditional model alone prefers token 0, but token 1 is
    # the one the condition makes likelier than the unconditional model does
    assert int(cond.argmax()) == 0 and int(cfg_logits(cond, uncond, 2.0).argmax()) == 1


class _TableNet:
    """A handmade network with the engine's forward interface: the next-token logits depend only
    on whether the stream's first token is 1 (conditional) or 0 (unconditional); it records
    every (ids, positions) it is fed."""

    device = torch.device("cpu")

    def __init__(self):
        self.fed = []
        self.table = {1: torch.tensor([9.0, 2.0, 1.9, 0.0]), 0: torch.tensor([9.0, 2.0, 0.0, 0.0])}

    def new_cache(self, batch, capacity):
        return {}

    def __call__(self, ids, positions, cache):
        self.fed.append((ids[0].tolist(), positions[0].tolist()))
        cache.setdefault("first", int(ids[0, 0]))
        return self.table[cache["first"]][None]


def test_guided_segment_mixes_restricts_and_feeds_both_streams():
    net = _TableNet()
    plain = guided_segment(net, torch.tensor([1, 3]), torch.tensor([0, 3]), (1, 4), 3, scale=1.0)
    assert plain.tolist() == [1, 1, 1]  # token 0 is outside the code range; greedy picks 1
    net.fed.clear()
    guided = guided_segment(net, torch.tensor([1, 3]), torch.tensor([0, 3]), (1, 4), 3, scale=3.0)
    assert guided.tolist() == [2, 2, 2]  # 0 + 3 * 1.9 = 5.7 beats 2.0
    # both prompts, then the guided token to both streams, each at its own next position
    assert net.fed == [([1, 3], [0, 1]), ([0, 3], [0, 1]), ([2], [2]), ([2], [2]), ([2], [3]), ([2], [3])]


def test_guided_sampling_stays_in_range_and_repeats_with_its_seed():
    settings = GenerationSettings(do_sample=True, temperature=5.0)
    draw = lambda seed: guided_segment(_TableNet(), torch.tensor([1, 3]), torch.tensor([0, 3]), (1, 4), 40,  # noqa: E731
                                       scale=2.0, settings=settings, generator=torch.Generator().manual_seed(seed))
    a, b, c = draw(0), draw(0), draw(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.tolist()) <= {1, 2, 3} and len(set(a.tolist())) > 1  # sampled, never the out-of-range 0


def test_guided_reply_at_scale_one_is_the_engines_greedy_image():
    """On a real (random) model, the guided path at scale 1 (the engine's forward, two KV
    caches) writes what the engine's constrained greedy decoding writes; at scale 4 it differs."""
    from anygpt.loaders import random_media_model
    from anygpt.parts import CodesPart
    from anygpt.templates import pretraining_prompt
    from anygpt.instructions import instruction_pool

    model = random_media_model(seed=3)
    r = model.layout["image"]
    prompt = pretraining_prompt("from_text", instruction_pool("image", "from_text")[0],
                                text="A small red circle in the middle on a white background.")
    greedy = GenerationSettings(max_new_tokens=40, do_sample=False)
    parts = model.complete(prompt, settings=greedy, force_modality="image", seed=0)
    engine_codes = [p for p in parts if isinstance(p, CodesPart)][0].codes
    ids, start = model._prompt_ids(prompt, greedy, "image")
    one = guided_segment(model.engine().model, ids, None, (r.code_offset, r.code_end), r.spec.frames_per_item, 1.0)
    assert torch.equal(model.layout.ids_to_codes("image", one), engine_codes)
    guided = model.complete(prompt, settings=greedy.with_(cfg_scale=4.0), force_modality="image", seed=0)
    codes = [p for p in guided if isinstance(p, CodesPart)][0].codes
    assert codes.shape == engine_codes.shape and not torch.equal(codes, engine_codes)
    # sampled guided replies repeat with their seed
    sampled = [model.complete(prompt, settings=GenerationSettings(max_new_tokens=40, cfg_scale=2.0),
                              force_modality="image", seed=s)[0].codes for s in (5, 5, 6)]
    assert torch.equal(sampled[0], sampled[1]) and not torch.equal(sampled[0], sampled[2])


def test_guidance_refuses_a_segment_of_no_fixed_length():
    from anygpt.errors import AnyGPTError
    from anygpt.loaders import random_media_model
    from anygpt.parts import TextPart

    model = random_media_model(seed=3)
    with pytest.raises(AnyGPTError, match="cfg_scale=2.0: guidance draws fixed-length segments .* speech"):
        model.complete([TextPart("say hi")], settings=GenerationSettings(max_new_tokens=40, cfg_scale=2.0),
                       force_modality="speech")
    with pytest.raises(GenerationSettingsError, match="cfg_scale=0"):
        GenerationSettings(cfg_scale=0).check()
