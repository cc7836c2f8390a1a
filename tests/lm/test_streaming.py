"""Streaming: text deltas, media segments as they complete, and speech audio in chunks that
start before the reply ends."""

from __future__ import annotations

import pytest
import torch

from anygpt.conversation import Conversation
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.streaming import Done, ReplyStreamer, SegmentDone, TextDelta
from anygpt.modalities.speech_streaming import AudioChunk, SpeechAudioStream
from anygpt.lm.tiny import random_tiny
from anygpt.modalities import load_tokenizer
from anygpt.model import AnyGPT



@pytest.fixture(scope="module")
def model(compact_lm):
    lm, tok, layout = compact_lm
    return AnyGPT(lm, tok, layout)


def feed(streamer, ids, step=1):
    for i in range(0, len(ids), step):
        streamer.put(torch.tensor(ids[i:i + step]))
    streamer.end()


def test_events_of_a_mixed_reply(model):
    tok, layout = model.tokenizer, model.layout
    im = layout["image"]
    codes = list(range(8))
    text1 = tok("A picture of a cat", add_special_tokens=False)["input_ids"]
    text2 = tok(" and more words", add_special_tokens=False)["input_ids"]
    after = tok("\n[Human]: not part of the reply", add_special_tokens=False)["input_ids"]
    end = layout.special_ids["<eos>"]
    ids = text1 + [im.start_id] + [im.code_offset + c for c in codes] + [im.end_id] + text2 + [end] + after
    events = []
    s = ReplyStreamer(model, on_event=events.append)
    feed(s, ids)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "A picture of a cat and more words"
    assert sum(isinstance(e, TextDelta) for e in events) >= 5  # deltas, not one block at the end
    (seg,) = [e for e in events if isinstance(e, SegmentDone)]
    assert seg.part.modality == "image" and seg.part.codes.tolist() == [codes]
    # the segment arrives before the text that follows it, Done comes last, once
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("SegmentDone") < max(i for i, k in enumerate(kinds) if k == "TextDelta")
    assert kinds[-1] == "Done" and kinds.count("Done") == 1
    assert [type(e) for e in s] == [type(e) for e in events]  # the same events, by iteration


def test_turn_end_string_is_held_back_until_it_is_complete(compact_lm):
    lm, tok, layout = compact_lm
    any_model = AnyGPT(lm, tok, layout, template="AnyGPT")  # turn end '<eom>': several tokens
    ids = tok("Hi <e there<eom>never", add_special_tokens=False)["input_ids"]
    events = []
    feed(ReplyStreamer(any_model, on_event=events.append), ids)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi <e there"


def test_generate_streams_what_it_returns(model):
    conv = Conversation()
    conv.add_user("Say something.")
    events = []
    reply = model.generate(conv, settings=GenerationSettings(max_new_tokens=30), seed=4,
                           streamer=ReplyStreamer(model, on_event=events.append))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.strip() == reply.text
    assert [e.part for e in events if isinstance(e, SegmentDone)] == reply.media()
    conv2 = Conversation()
    conv2.add_user("Say something.")
    events_hf = []
    reply_hf = model.generate(conv2, settings=GenerationSettings(max_new_tokens=30, do_sample=False), engine="hf",
                              streamer=ReplyStreamer(model, on_event=events_hf.append))
    assert "".join(e.text for e in events_hf if isinstance(e, TextDelta)).strip() == reply_hf.text
    assert isinstance(events_hf[-1], Done)


@pytest.fixture(scope="module")
def speech_tok():
    return load_tokenizer("speech", "compact")


def test_speech_audio_arrives_in_chunks_before_the_segment_ends(speech_tok):
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(1, 1, 16000 * 2, generator=g) * 0.1
    codes = speech_tok.encode(wav)[0, 0].tolist()  # 50 layer-1 frames
    chunks = []
    stream = SpeechAudioStream(speech_tok, chunks.append, first_frames=8, chunk_frames=20, lookahead_frames=2)
    added_before_first = None
    for n, c in enumerate(codes, 1):
        stream.add(c)
        if chunks and added_before_first is None:
            added_before_first = n
    stream.finish()
    assert added_before_first == 10  # first_frames + lookahead
    # chunks at 10, 30 and 50 frames added (each keeps 2 frames back), the rest at the end
    assert [c.start_frame for c in chunks] == [0, 8, 28, 48]
    assert [c.final for c in chunks] == [False, False, False, True]
    hop = speech_tok.hop
    assert sum(c.samples.numel() for c in chunks) == len(codes) * hop
    audio = torch.cat([c.samples for c in chunks])
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1.0 and audio.std() > 1e-4
    assert all(isinstance(c, AudioChunk) and c.sample_rate == 16000 for c in chunks)


def test_reply_streamer_sends_audio_before_the_speech_segment_completes(speech_tok):
    lm, tok, layout = random_tiny([speech_tok.token_spec], seed=5, text_vocab=500)
    model = AnyGPT(lm, tok, layout, tokenizers={"speech": speech_tok})
    sp = layout["speech"]
    codes = [int(c) for c in torch.randint(0, 512, (30,), generator=torch.Generator().manual_seed(1))]
    events = []
    s = ReplyStreamer(model, on_event=events.append, first_frames=8, chunk_frames=10)
    s.put(torch.tensor([sp.start_id]))
    for i, c in enumerate(codes):
        s.put(torch.tensor([sp.code_offset + c]))
        if i == 11:
            assert any(isinstance(e, AudioChunk) for e in events)  # long before the end marker
    s.put(torch.tensor([sp.end_id]))
    s.end()
    kinds = [type(e).__name__ for e in events]
    audio = [e for e in events if isinstance(e, AudioChunk)]
    assert sum(a.samples.numel() for a in audio) == 30 * speech_tok.hop and audio[-1].final
    assert kinds.index("SegmentDone") < kinds.index("Done")
    (seg,) = [e for e in events if isinstance(e, SegmentDone)]
    assert seg.part.codes.tolist() == [codes]
