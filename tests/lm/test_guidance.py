"""Classifier-free guidance: the logit mixing on handmade numbers, and guided decoding."""

from __future__ import annotations

import torch

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


class _TableLM(torch.nn.Module):
    """A handmade LM: the next-token logits depend only on whether the prompt's first token is
    1 (conditional) or 0 (unconditional); it records every token it is fed."""

    def __init__(self):
        super().__init__()
        self.fed = []
        self.table = {1: torch.tensor([9.0, 2.0, 1.9, 0.0]), 0: torch.tensor([9.0, 2.0, 0.0, 0.0])}

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, input_ids, past_key_values=None, use_cache=True):
        ids = input_ids[0].tolist()
        self.fed.append(ids)
        first = past_key_values if past_key_values is not None else ids[0]
        logits = self.table[first].expand(1, len(ids), 4)
        return type("Out", (), {"logits": logits, "past_key_values": first})()


def test_guided_segment_mixes_restricts_and_feeds_both_streams():
    lm = _TableLM()
    plain = guided_segment(lm, torch.tensor([1, 3]), torch.tensor([0, 3]), (1, 4), 3, scale=1.0)
    assert plain.tolist() == [1, 1, 1]  # token 0 is outside the code range; greedy picks 1
    lm.fed.clear()
    guided = guided_segment(lm, torch.tensor([1, 3]), torch.tensor([0, 3]), (1, 4), 3, scale=3.0)
    assert guided.tolist() == [2, 2, 2]  # 0 + 3 * 1.9 = 5.7 beats 2.0
    assert lm.fed == [[1, 3], [0, 3], [2], [2], [2], [2]]  # both prompts, then the guided token to both


def test_guided_segment_at_scale_one_is_the_models_greedy_image():
    """On a real (random) model, guidance at scale 1 writes what constrained greedy decoding
    with the image forced writes."""
    from anygpt.eval.scene_abilities import draw_codes, image_prompt_ids
    from anygpt.lm.generation import GenerationSettings
    from anygpt.loaders import random_media_model
    from anygpt.parts import CodesPart
    from anygpt.templates import pretraining_prompt
    from anygpt.instructions import instruction_pool

    model = random_media_model(seed=3)
    text = "A small red circle in the middle on a white background."
    ours = draw_codes(model, text, cfg_scale=1.0)
    prompt = pretraining_prompt("from_text", instruction_pool("image", "from_text")[0], text=text)
    parts = model.complete(prompt, settings=GenerationSettings(max_new_tokens=40, do_sample=False),
                           force_modality="image", seed=0)
    codes = [p for p in parts if isinstance(p, CodesPart)][0].codes
    assert torch.equal(ours, codes)
    assert int(image_prompt_ids(model, text)[-1]) == model.layout["image"].start_id
    guided = draw_codes(model, text, cfg_scale=4.0)
    assert guided.shape == codes.shape and not torch.equal(guided, codes)
