"""What each request gets from the engine: its own random stream, its own stop, cancellation,
clear errors on bad input, and a cache that is gone after every call."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

from anygpt.lm.engine import Engine, EngineError, Request
from anygpt.lm.generation import GenerationSettings, GenerationSettingsError
from anygpt.lm.sampling import RowSampling

SAMPLE = GenerationSettings(max_new_tokens=24, do_sample=True, temperature=1.3, top_k=50, top_p=0.9,
                            repetition_penalty=1.2)


@pytest.fixture(scope="module")
def engine(compact_lm):
    model, _, layout = compact_lm
    return Engine(model, layout, max_batch=8, max_len=128)


def test_a_request_samples_the_same_tokens_alone_or_in_a_batch(engine):
    alone = engine.generate([Request([5, 6, 7, 8], SAMPLE, generator=11)])[0].ids
    others = [Request(list(range(3, 3 + n)), SAMPLE, generator=n) for n in (9, 30, 2)]
    batch = engine.generate(others[:2] + [Request([5, 6, 7, 8], SAMPLE, generator=11)] + others[2:])
    assert batch[2].ids == alone
    again = engine.generate([Request([5, 6, 7, 8], SAMPLE, generator=torch.Generator().manual_seed(11))])
    assert again[0].ids == alone
    other_seed = engine.generate([Request([5, 6, 7, 8], SAMPLE, generator=12)])[0].ids
    assert other_seed != alone


def test_each_row_stops_on_its_own(engine):
    greedy = GenerationSettings(max_new_tokens=20, do_sample=False)
    free = engine.generate([Request([5, 6, 7], greedy)])[0].ids
    stop = free[4]
    out = engine.generate([Request([5, 6, 7], greedy, stop_ids=[stop]), Request([5, 6, 7], greedy),
                           Request([9, 9], greedy.with_(max_new_tokens=3))])
    cut = free.index(stop) + 1
    assert out[0].ids == free[:cut] and out[0].finish_reason == "stop"
    assert out[1].ids == free and out[1].finish_reason == "length"
    assert len(out[2].ids) == 3 and out[2].finish_reason == "length"


class Recorder:
    """A BaseStreamer-shaped streamer that records what it gets and can cancel its request."""

    def __init__(self, cancel_after=None):
        self.ids, self.ends = [], 0
        self.cancel = threading.Event()
        self.cancel_after = cancel_after

    def put(self, ids):
        assert ids.dim() == 1
        self.ids += ids.tolist()
        if self.cancel_after is not None and len(self.ids) >= self.cancel_after:
            self.cancel.set()

    def end(self):
        self.ends += 1


def test_streamer_gets_every_new_id_and_one_end(engine):
    rec = Recorder()
    out = engine.generate([Request([5, 6, 7], SAMPLE, generator=1, streamer=rec)])[0]
    assert rec.ids == out.ids and rec.ends == 1


def test_cancel_stops_a_request_midway_and_the_next_request_runs(engine):
    rec = Recorder(cancel_after=5)
    other = Recorder()
    out = engine.generate([Request([5, 6, 7], SAMPLE, generator=1, streamer=rec, cancel=rec.cancel),
                           Request([8, 9], SAMPLE, generator=2, streamer=other)])
    assert out[0].finish_reason == "cancelled" and len(out[0].ids) == 5 and rec.ends == 1
    assert out[1].finish_reason == "length" and len(out[1].ids) == 24 and other.ends == 1
    assert engine.cache is None
    assert len(engine.generate([Request([5, 6, 7], SAMPLE)])[0].ids) == 24


def test_an_error_midway_ends_streamers_and_frees_the_cache(engine):
    class Boom(Recorder):
        def put(self, ids):
            raise RuntimeError("client went away")

    bystander = Recorder()
    with pytest.raises(RuntimeError, match="client went away"):
        engine.generate([Request([5, 6], SAMPLE, streamer=Boom()), Request([7], SAMPLE, streamer=bystander)])
    assert engine.cache is None and bystander.ends == 1


@pytest.mark.parametrize("change, message", [
    (dict(max_new_tokens=0), "max_new_tokens=0"),
    (dict(max_new_tokens=-3), "max_new_tokens=-3"),
    (dict(temperature=0.0), "temperature=0.0"),
    (dict(temperature=float("nan")), "temperature=nan"),
    (dict(top_p=0.0), "top_p=0.0"),
    (dict(top_p=1.5), "top_p=1.5"),
    (dict(top_k=-1), "top_k=-1"),
    (dict(repetition_penalty=0), "repetition_penalty=0"),
    (dict(max_frames={"speech": -1}), "max_frames"),
])
def test_bad_settings_are_clear_errors(engine, change, message):
    with pytest.raises(GenerationSettingsError, match=message.replace("[", r"\[")):
        engine.generate([Request([5, 6], GenerationSettings(**change))])
    assert engine.cache is None


def test_bad_requests_are_clear_errors(engine):
    with pytest.raises(EngineError, match="200 tokens long; this model reads at most 127 tokens"):
        engine.generate([Request(list(range(3, 203)), SAMPLE)])
    with pytest.raises(EngineError, match="empty prompt"):
        engine.generate([Request([], SAMPLE)])
    with pytest.raises(GenerationSettingsError, match="beam search"):
        engine.generate([Request([5], GenerationSettings(num_beams=3))])
    with pytest.raises(EngineError, match="prompt ids must be in"):
        engine.generate([Request([5, 10**6], SAMPLE)])
    with pytest.raises(EngineError, match="stop_strings need the engine's tokenizer"):
        engine.generate([Request([5], SAMPLE, stop_strings=["<eom>"])])
    with pytest.raises(ValueError, match="max_frames names unknown modalities"):
        engine.generate([Request([5], GenerationSettings(max_frames={"video": 3}))])


def test_reply_is_cut_to_the_cache_and_segments_still_close(compact_lm):
    model, _, layout = compact_lm
    engine = Engine(model, layout, max_len=30)
    music = layout["music"]
    prompt = [5, 6, 7, music.start_id]
    out = engine.generate([Request(prompt, GenerationSettings(max_new_tokens=500), generator=3)])[0]
    assert len(out.ids) == 30 - len(prompt) and out.finish_reason == "length"
    layout.parse_ids([music.start_id] + out.ids, lambda run: "t", strict=True)  # well-formed


def test_sampling_filters_match_hf_warpers():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 300, generator=g) * 3
    seen_ids = torch.randint(0, 300, (4, 20), generator=g)
    rows = [GenerationSettings(do_sample=True, top_k=k, top_p=p, repetition_penalty=r)
            for k, p, r in [(0, 1.0, 1.3), (40, 1.0, 1.0), (0, 0.8, 1.1), (25, 0.6, 1.0)]]
    sampler = RowSampling(rows)
    seen = torch.zeros(4, 300, dtype=torch.bool).scatter_(1, seen_ids, True)
    ours = sampler.penalise_(logits.clone(), seen)
    for i, s in enumerate(rows):
        want = RepetitionPenaltyLogitsProcessor(s.repetition_penalty)(seen_ids[i:i + 1], logits[i:i + 1].clone())
        assert torch.allclose(ours[i:i + 1], want)
        kept = want
        if s.top_k:
            kept = TopKLogitsWarper(s.top_k)(None, kept)
        if s.top_p < 1:
            kept = TopPLogitsWarper(s.top_p)(None, kept)
        allowed = torch.isfinite(kept[0])
        # every sampled token lies in HF's kept set, and many different ones are drawn
        gens = [torch.Generator().manual_seed(n) for n in range(200)]
        row = RowSampling([s] * 200)
        picks = row.choose(ours[i:i + 1].expand(200, -1).clone(), gens)
        assert allowed[picks].all()
        assert len(set(picks.tolist())) > min(5, int(allowed.sum()) // 2)
