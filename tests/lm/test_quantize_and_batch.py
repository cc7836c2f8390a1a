"""int8 projections stay close to fp32, and generate_batch answers like generate."""

from __future__ import annotations

import pytest
import torch

from anygpt.conversation import Conversation
from anygpt.errors import AnyGPTError
from anygpt.lm.engine import Engine, Request
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.llama_static import LeanLlama
from anygpt.lm.quantize import quantize_lean
from anygpt.model import AnyGPT


def test_int8_logits_are_close_to_fp32_and_greedy_mostly_agrees(compact_lm):
    model, _, layout = compact_lm
    fp32, int8 = LeanLlama(model), LeanLlama(model)
    quantize_lean(int8, "int8")
    assert int8.weight_bytes_per_token() < 0.3 * fp32.weight_bytes_per_token()
    ids = torch.randint(3, 400, (2, 50), generator=torch.Generator().manual_seed(0))
    pos = torch.arange(50).expand(2, -1)
    a = fp32(ids, pos, fp32.new_cache(2, 50), last_only=False)
    b = int8(ids, pos, int8.new_cache(2, 50), last_only=False)
    rel = (a - b).norm() / a.norm()
    assert 0 < rel < 0.05
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean()
    assert agree > 0.8
    greedy = GenerationSettings(max_new_tokens=30, do_sample=False)
    out = Engine(model, layout, quantize="int8").generate([Request([5, 6, 7], greedy)])[0]
    layout.parse_ids(out.ids, lambda run: "t", strict=True)  # still constrained


def test_int8_keeps_keys_and_values_in_bfloat16(compact_lm):
    """The int8 engine's KV cache is bfloat16 (half the bytes a decode step's attention reads):
    prefill and ragged decode steps give logits close to an fp32 cache's, and a decoder whose
    rows join together and leave (cache columns moved) still writes well-formed replies."""
    model, _, layout = compact_lm
    half, full = LeanLlama(model), LeanLlama(model)
    quantize_lean(half, "int8")
    quantize_lean(full, "int8")
    full.kv_dtype = torch.float32
    ids = torch.randint(3, 400, (2, 40), generator=torch.Generator().manual_seed(0))
    pos = torch.arange(40).expand(2, -1)
    caches = [m.new_cache(2, 48) for m in (half, full)]
    assert caches[0].k[0].dtype == torch.bfloat16 and caches[1].k[0].dtype == torch.float32
    a, b = (m(ids, pos, c, last_only=False) for m, c in zip((half, full), caches))
    assert (a - b).norm() / b.norm() < 0.05  # a random model's logits are small: int8 alone is within 0.05
    for c in caches:
        c.valid[:, :41] = True
    nxt, cols = torch.tensor([[7], [9]]), torch.tensor([40, 40])
    a, b = (m(nxt, cols[:, None], c, cols=cols) for m, c in zip((half, full), caches))
    assert (a - b).norm() / b.norm() < 0.05 and (a.argmax(-1) == b.argmax(-1)).all()
    engine = Engine(model, layout, quantize="int8", max_batch=3)
    sampled = GenerationSettings(max_new_tokens=24, do_sample=True)
    reqs = [Request([5, 6, 7, 8][: 2 + i % 3], GenerationSettings(max_new_tokens=4 + 9 * i, do_sample=True),
                    generator=i) for i in range(6)] + [Request([5, 6, 7], sampled, generator=9)]
    for out in engine.generate(reqs):
        layout.parse_ids(out.ids, lambda run: "t", strict=True)


def test_unknown_quantization_is_a_clear_error(compact_lm):
    model, _, layout = compact_lm
    with pytest.raises(AnyGPTError, match="unknown quantization 'int4'"):
        Engine(model, layout, quantize="int4")


@pytest.mark.parametrize("do_sample", [False, True])
def test_generate_batch_answers_as_generate_does(compact_lm, do_sample):
    lm, tok, layout = compact_lm
    model = AnyGPT(lm, tok, layout)
    settings = GenerationSettings(max_new_tokens=25, do_sample=do_sample)
    questions = ["Hi.", "Describe a long and winding road, please.", "Draw."]
    convs = []
    for q in questions:
        c = Conversation()
        c.add_user(q)
        convs.append(c)
    batch = model.generate_batch(convs, settings=settings, seed=7)
    for i, q in enumerate(questions):
        c = Conversation()
        c.add_user(q)
        single = model.generate(c, settings=settings, seed=7 + i)
        assert single.parts == batch[i].parts
        assert convs[i].turns[-1].parts == batch[i].parts
    if not do_sample:  # greedy: HF generate on the same padded batch gives the same replies
        hf_convs = []
        for q in questions:
            c = Conversation()
            c.add_user(q)
            hf_convs.append(c)
        assert [r.parts for r in model.generate_batch(hf_convs, settings=settings, engine="hf")] == \
            [r.parts for r in batch]


def test_unknown_engine_is_a_clear_error(compact_lm):
    lm, tok, layout = compact_lm
    c = Conversation()
    c.add_user("Hi.")
    with pytest.raises(AnyGPTError, match="unknown engine 'vllm'"):
        AnyGPT(lm, tok, layout).generate(c, engine="vllm")


def test_int8_sub_heads_give_the_full_int8_heads_tokens(compact_lm):
    """Inside a segment the int8 engine computes only that codebook's logits; the tokens are
    those of the full int8 head."""
    model, _, layout = compact_lm
    sub = Engine(model, layout, quantize="int8")
    full = Engine(model, layout, quantize="int8")
    full.group_of_class = None
    greedy = GenerationSettings(max_new_tokens=40, do_sample=False)
    sampled = GenerationSettings(max_new_tokens=40)
    starts = [layout[m].start_id for m in ("speech", "music", "image")]
    reqs = lambda: [Request([5, 6, s], st, generator=i) for i, s in enumerate(starts) for st in (greedy, sampled)]
    alone = lambda e: [e.generate([r])[0].ids for r in reqs()]
    used = []
    group = sub._group
    sub._group = lambda *a: used.append(group(*a)) or used[-1]
    assert alone(sub) == alone(full)
    assert sum(g is not None and g > 0 for g in used) > 50  # codebook sub-heads were used
    assert [r.ids for r in sub.generate(reqs())] == [r.ids for r in full.generate(reqs())]


def test_engine_follows_weights_changed_in_place(compact_lm):
    """A model trained between two generate calls answers with its new weights."""
    lm, tok, layout = compact_lm
    model = AnyGPT(lm, tok, layout)
    settings = GenerationSettings(max_new_tokens=12, do_sample=False)

    def reply():
        c = Conversation()
        c.add_user("Hi.")
        return model.generate(c, settings=settings).parts

    before = reply()
    assert model.engine() is model.engine()  # reused while the weights stay
    saved = lm.lm_head.weight.detach().clone()
    try:
        with torch.no_grad():
            lm.lm_head.weight.mul_(-1.0)  # an in-place update, as an optimizer step does
        c = Conversation()
        c.add_user("Hi.")
        assert reply() == model.generate(c, settings=settings, engine="hf").parts != before
    finally:
        with torch.no_grad():
            lm.lm_head.weight.copy_(saved)
