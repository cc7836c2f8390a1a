"""anygpt.data.conversations: conversations.jsonl records <-> turns (both formats), and the chat
training sample whose labels cover only the assistant's content and turn end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anygpt.data.conversations import chat_sample, read_conversations, record_turns, turn_record
from anygpt.data.packing import IGNORE
from anygpt.errors import AnyGPTError, ManifestError
from anygpt.lm.sequence import SequenceEncoder
from anygpt.lm.tiny import random_tiny
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import Turn, get_chat_template
from anygpt.token_spec import TokenSpec

SPEC = TokenSpec("image", "\U0001F440", "<soim>", "<eoim>", 8, 1, 2)


@pytest.fixture(scope="module")
def tiny():
    _, tok, layout = random_tiny([SPEC], seed=0, text_vocab=400)
    return tok, layout


def test_records_round_trip(tiny):
    turns = [Turn("user", [TextPart("draw <soim> literally"), TextPart("<-Ins->", markup=True)]),
             Turn("assistant", [CodesPart("image", torch.tensor([[3, 7]]))])]
    records = [turn_record(t) for t in turns]
    assert records[0]["parts"] == [{"text": "draw <soim> literally"}, {"text": "<-Ins->", "markup": True}]
    assert records[1]["parts"] == [{"modality": "image", "codes": [[3, 7]]}]
    back = record_turns(json.loads(json.dumps({"turns": records})))
    assert [t.role for t in back] == ["user", "assistant"]
    assert back[0].parts == turns[0].parts and torch.equal(back[1].parts[0].codes, turns[1].parts[0].codes)


def test_the_first_format_needs_the_layout(tiny, tmp_path):
    _, layout = tiny
    record = {"id": "c1", "turns": [{"role": "user", "content": "look <soim><\U0001F4405><\U0001F4401><eoim>"}]}
    with pytest.raises(AnyGPTError, match="needs the token layout"):
        record_turns(record)
    parts = record_turns(record, layout)[0].parts
    assert [type(p).__name__ for p in parts] == ["TextPart", "CodesPart"] and parts[1].codes.tolist() == [[5, 1]]
    path = tmp_path / "conversations.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({"id": "c2", "turns": [{"role": "user"}]}) + "\n")
    with pytest.raises(ManifestError, match=f"{path}:2: "):
        read_conversations(path, layout)
    path.write_text(json.dumps(record) + "\n")
    assert [i for i, _ in read_conversations(path, layout)] == ["c1"]


def test_chat_sample_labels_only_the_assistant(tiny):
    tok, layout = tiny
    template = get_chat_template("MMGPT")
    turns = [Turn("user", [TextPart("hello")]), Turn("assistant", [TextPart("hi there")])]
    sample = chat_sample(turns, template, SequenceEncoder(tok, layout))
    labelled = sample.labels != IGNORE
    assert 0 < labelled.sum() < len(sample.input_ids) and np.array_equal(sample.labels[labelled], sample.input_ids[labelled])
    answer = tok.decode(sample.input_ids[labelled].tolist())
    assert "hi there" in answer and "hello" not in answer and template.bot_end in answer
