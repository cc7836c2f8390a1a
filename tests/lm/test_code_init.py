"""Fresh LM code rows from the tokenizer's code vectors (anygpt.lm.code_init)."""

from __future__ import annotations

import pytest
import torch

from anygpt.lm.code_init import init_code_rows
from anygpt.lm.expand import expand_vocabulary
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.lm.tiny import builtin_texts, tiny_llama
from anygpt.token_spec import TokenSpec

SPEC = TokenSpec(name="image", prefix="img", start="<soi>", end="<eoi>", codebook_size=16, num_codebooks=1)


def test_code_rows_keep_the_codes_neighbours_and_touch_nothing_else():
    tok = train_text_tokenizer(builtin_texts(), vocab_size=300)
    model = tiny_llama(len(tok), hidden=48, layers=1, heads=2)
    layout = expand_vocabulary(model, tok, [SPEC])
    before = [model.get_input_embeddings().weight.detach().clone(), model.get_output_embeddings().weight.detach().clone()]
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=g) * 3
    vectors = centres.repeat_interleave(4, 0) + 0.1 * torch.randn(16, 8, generator=g)  # 4 clusters of 4 codes
    assert init_code_rows(model, layout, {"image": vectors, "music": None}, seed=1) == ["image"]
    r = layout["image"]
    for w, old in zip((model.get_input_embeddings().weight, model.get_output_embeddings().weight), before):
        rows = w[r.code_offset:r.code_end].detach()
        assert abs(float(rows.std()) - model.config.initializer_range) < 1e-3
        nearest = torch.cdist(rows, rows).fill_diagonal_(float("inf")).argmin(1)
        assert torch.equal(nearest // 4, torch.arange(16) // 4)  # each code's nearest row is a cluster mate
        outside = torch.ones(w.shape[0], dtype=torch.bool)
        outside[r.code_offset:r.code_end] = False
        assert torch.equal(w[outside], old[outside])


def test_a_wrong_number_of_vectors_is_named():
    tok = train_text_tokenizer(builtin_texts(), vocab_size=300)
    model = tiny_llama(len(tok), hidden=16, layers=1, heads=2)
    layout = expand_vocabulary(model, tok, [SPEC])
    with pytest.raises(ValueError, match="image: 15 code vectors for 16 codes"):
        init_code_rows(model, layout, {"image": torch.randn(15, 8)})
