import pytest
import torch

from anygpt.layout import TokenLayout
from anygpt.lm.expand import expand_vocabulary, resize_embeddings
from anygpt.lm.sequence import SequenceEncoder
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.lm.tiny import builtin_texts, tiny_llama
from anygpt.modalities import released_specs
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import get_chat_template, pretraining_pair, Turn
import random


@pytest.fixture(params=["llama-sentencepiece", "our-bpe"])
def tokenizer(request, llama_tokenizer):
    if request.param == "llama-sentencepiece":
        return llama_tokenizer
    return train_text_tokenizer(builtin_texts(), vocab_size=500)


def test_expansion_follows_release_order(tokenizer):
    base = len(tokenizer)
    model = tiny_llama(base, hidden=32, layers=1, heads=2)
    layout = expand_vocabulary(model, tokenizer, released_specs())
    planned = TokenLayout.plan(base, released_specs())
    assert {n: (r.code_offset, r.start_id, r.end_id) for n, r in layout.ranges.items()} == \
           {n: (r.code_offset, r.start_id, r.end_id) for n, r in planned.ranges.items()}
    assert layout.special_ids == planned.special_ids
    assert len(tokenizer) == base + 17420
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
    # expanding again adds nothing
    layout2 = expand_vocabulary(model, tokenizer, released_specs())
    assert len(tokenizer) == base + 17420 and layout2.vocab_size == layout.vocab_size


def test_new_rows_random_or_mean():
    tok = train_text_tokenizer(builtin_texts(), vocab_size=400)
    model = tiny_llama(len(tok), hidden=32, layers=1, heads=2)
    old = model.get_input_embeddings().weight.detach().clone()
    n = resize_embeddings(model, len(tok) + 10, init="mean")
    w = model.get_input_embeddings().weight
    assert n == 10 and torch.allclose(w[-10:], old.mean(0).expand(10, -1), atol=1e-6)
    assert torch.equal(w[: len(tok)], old)
    model2 = tiny_llama(len(tok), hidden=32, layers=1, heads=2)
    resize_embeddings(model2, len(tok) + 10, init="random", seed=1)
    new = model2.get_input_embeddings().weight[-10:]
    assert new.std() > 0.005 and not torch.allclose(new[0], new[1])
    with pytest.raises(ValueError, match="init"):
        resize_embeddings(model2, len(tok) + 20, init="zeros")


def test_piecewise_encoding_equals_tokenizing_the_string(tokenizer):
    """Encoding text pieces and media codes separately gives the ids the tokenizer gives for
    the whole rendered string, for the LLaMA tokenizer and for ours."""
    model = tiny_llama(len(tokenizer), hidden=32, layers=1, heads=2)
    layout = expand_vocabulary(model, tokenizer, released_specs())
    codec = SequenceEncoder(tokenizer, layout)
    rng = random.Random(0)
    image = CodesPart("image", torch.randint(0, 8192, (1, 32)))
    music = CodesPart("music", torch.randint(0, 2048, (4, 6)))
    speech = CodesPart("speech", torch.randint(0, 1024, (1, 20)))
    samples = [
        pretraining_pair(image, "A red circle above a blue square.", "to_text", rng),
        pretraining_pair(music, "A slow piece for piano in D minor.", "from_text", rng),
        get_chat_template("MMGPT").prompt([Turn("user", [speech, TextPart("Please transcribe it.")])]),
    ]
    for parts in samples:
        text = "".join(p.text if isinstance(p, TextPart) else layout.codes_to_text(p.modality, p.codes) for p in parts)
        assert codec.encode(parts).tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert codec.decode(codec.encode(parts))[1::2] == [p for p in parts if isinstance(p, CodesPart)]
