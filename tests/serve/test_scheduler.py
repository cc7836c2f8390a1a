"""anygpt.serve.scheduler: the bounded queue (503 + Retry-After), queued/running counts, per-job
failures (cancelled 499, expired 504), a real reply, and no new jobs once stopped. Every wait is
on a job's future, with a generous bound."""

import threading

import pytest

from anygpt.serve.errors import APIError
from anygpt.serve.jobs import build_job
from anygpt.serve.media import MediaLimits
from anygpt.serve.media_cache import MediaCache
from anygpt.serve.scheduler import JobResult, Scheduler
from anygpt.serve.schemas import ChatRequest
from serve_helpers import MODEL

WAIT_S = 300  # a bound on a wait that an event ends, never a timing threshold


def text_job(model, timeout=60.0):
    req = ChatRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=4, seed=1)
    return build_job(req, model, MediaCache(), MediaLimits(), model_name=MODEL, timeout=timeout)


def test_full_queue_is_a_503_with_retry_after(media_model):
    sched = Scheduler(media_model, MediaCache(), max_batch=1, max_queue=2, retry_after=7)  # never started
    sched.submit(text_job(media_model))
    sched.submit(text_job(media_model))
    assert (sched.queued, sched.running) == (2, 0)
    with pytest.raises(APIError) as e:
        sched.submit(text_job(media_model))
    assert (e.value.status, e.value.code, e.value.headers) == (503, "server_busy", {"Retry-After": "7"})
    assert "2 requests are waiting; retry in 7 s" in e.value.message
    assert sched.queued == 2
    with pytest.raises(ValueError, match="max_queue=0"):
        Scheduler(media_model, MediaCache(), max_queue=0)


def test_started_scheduler_answers_and_fails_jobs_alone_then_refuses_when_stopped(media_model):
    sched = Scheduler(media_model, MediaCache(), max_batch=2, max_queue=8).start()
    try:
        cancelled, expired, good = text_job(media_model), text_job(media_model, timeout=-1), text_job(media_model)
        cancelled.cancel.set()
        for job in (cancelled, expired, good):
            sched.submit(job)
        result = good.future.result(timeout=WAIT_S)
        assert isinstance(result, JobResult) and result.media == []
        assert 1 <= result.completion_tokens <= 4 and result.prompt_tokens > 0
        assert result.finish_reason in ("stop", "length")
        for job, status, code in ((cancelled, 499, "cancelled"), (expired, 504, "timeout")):
            error = job.future.exception(timeout=WAIT_S)
            assert (error.status, error.code) == (status, code)
        assert (sched.queued, sched.running) == (0, 0) and sched.batches >= 1
    finally:
        sched.stop()
    with pytest.raises(APIError) as e:
        sched.submit(text_job(media_model))
    assert (e.value.status, e.value.code) == (503, "shutting_down")


def admitted_scheduler(model, jobs, max_batch, wrap=None):
    """A scheduler (thread not started) with `jobs` queued, after one admission pass -> it."""
    sched = Scheduler(model, MediaCache(), max_batch=max_batch, max_queue=16)
    sched._decoder = sched.engine.decoder()
    if wrap is not None:
        wrap(sched._decoder)
    for job in jobs:
        sched.submit(job)
    sched._admit()
    return sched


def job_of(model, content, **body):
    req = ChatRequest(messages=[{"role": "user", "content": content}], seed=1, **{"max_tokens": 4, **body})
    return build_job(req, model, MediaCache(), MediaLimits(), model_name=MODEL, timeout=60.0)


def test_waiting_jobs_join_together_short_ones_before_long_ones(media_model):
    music = job_of(media_model, "Play.", modalities=["music"], max_tokens=1200)
    texts = [job_of(media_model, f"hello {i}") for i in range(3)]
    sched = admitted_scheduler(media_model, [music] + texts, max_batch=3)
    try:
        running = {id(run.job) for run, _, _ in sched._slots.values()}
        assert running == {id(j) for j in texts}  # one pass: the three short jobs, the long one waits
        assert sched.running == 3 and sched.queued == 1 and sched._decoder.running == 3
    finally:
        sched._close_decoder()


def test_a_job_the_decoder_refuses_fails_alone_and_the_others_join(media_model):
    from anygpt.lm.decoder import EngineError

    def refuse_second(dec):
        real = dec.prefill_many

        def prefill_many(requests):
            out = real([r for i, r in enumerate(requests) if i != 1])
            return out[:1] + [EngineError("a request the decoder cannot run")] + out[1:]
        dec.prefill_many = prefill_many

    jobs = [job_of(media_model, f"hello {i}") for i in range(3)]
    too_long = job_of(media_model, "word " * 5000)  # fails while it is prepared (context overflow)
    sched = admitted_scheduler(media_model, [jobs[0], jobs[1], too_long, jobs[2]], max_batch=4, wrap=refuse_second)
    try:
        assert {id(run.job) for run, _, _ in sched._slots.values()} == {id(jobs[0]), id(jobs[2])}
        refused, overflow = jobs[1].future.exception(timeout=1), too_long.future.exception(timeout=1)
        assert (refused.status, refused.code) == (400, "invalid_request") and "cannot run" in refused.message
        assert (overflow.status, overflow.code) == (400, "context_length_exceeded")
    finally:
        sched._close_decoder()


def test_a_service_loads_every_media_tokenizer_before_its_first_request(media_model, monkeypatch):
    """A deferred tokenizer (the model's way of loading only what a chat reply uses) is loaded
    when the service is built, so no reply pays for it while other requests wait on the batch;
    and a started service shortens the GIL switch interval (see ChatService.start)."""
    import sys

    from anygpt.serve.service import SWITCH_INTERVAL_S, ChatService, ServeConfig

    loads = []
    music = media_model.tokenizers["music"]
    media_model.tokenizers.defer("music", lambda: loads.append("music") or music)
    assert "music" not in media_model.tokenizers.loaded()
    before = sys.getswitchinterval()
    service = ChatService(media_model, ServeConfig(model_name=MODEL))
    assert loads == ["music"] and "music" in media_model.tokenizers.loaded()
    service.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    finally:
        service.stop()
    assert sys.getswitchinterval() == before  # and restores it when it stops


class MainStepHeld:
    """Wraps the scheduler's engine: the first decoder it builds (the decode thread's) holds each
    step that has rows until released; `entered` is set when such a step is held."""

    def __init__(self, engine):
        self.engine, self.entered, self.release, self.built = engine, threading.Event(), threading.Event(), 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def decoder(self, **kw):
        dec = self.engine.decoder(**kw)
        self.built += 1
        if self.built == 1:
            step = dec.step

            def held_step(**kw):
                if dec.running:
                    self.entered.set()
                    assert self.release.wait(WAIT_S)
                return step(**kw)
            dec.step = held_step
        return dec


def test_a_new_request_streams_its_first_token_while_the_running_batch_is_mid_step(media_model):
    """With the intake thread, a request that arrives during a decode step is prefilled and takes
    its first step beside it: its first text streams out while that step is still held here, and
    it then joins the batch and ends with the others."""
    sched = Scheduler(media_model, MediaCache(), max_batch=4, max_queue=8)
    assert sched._intake is not None  # the torch engine allows concurrent decoders
    held = sched.engine = MainStepHeld(sched.engine)  # before start: the thread builds its decoders from it
    sched.start()
    try:
        running = job_of(media_model, "Tell me a story.", max_tokens=40)
        sched.submit(running)
        assert held.entered.wait(WAIT_S)  # the decode thread is inside a step of the running job
        first = threading.Event()
        short = job_of(media_model, "hello", stream=True)
        short.emit = lambda event: first.set()
        sched.submit(short)
        assert first.wait(WAIT_S) and not held.release.is_set()
        held.release.set()
        results = [job.future.result(timeout=WAIT_S) for job in (running, short)]
        # the running reply uses its whole budget (no early stop with this seed), so the short job,
        # adopted a few steps after the release at most, joined it in the batch
        assert results[0].completion_tokens == 40 and sched.largest_batch == 2
    finally:
        held.release.set()
        sched.stop()


def test_rows_that_fail_to_join_the_batch_fail_alone_and_the_scheduler_goes_on(media_model, monkeypatch):
    sched = Scheduler(media_model, MediaCache(), max_batch=4, max_queue=8)
    from anygpt.lm.engine import AdoptionRefused

    real, built, calls = sched.engine.decoder, [], []

    def decoder(**kw):
        dec = real(**kw)
        built.append(dec)
        if len(built) == 1:  # the decode thread's: its first adoption is refused
            step = dec.step

            def refusing_step(**kw):
                if kw.get("adopt"):
                    calls.append(len(kw["adopt"]))
                    if len(calls) == 1:
                        raise AdoptionRefused("a bug in adopt")
                return step(**kw)
            dec.step = refusing_step
        return dec

    monkeypatch.setattr(sched.engine, "decoder", decoder)  # the model keeps its engine: undone after the test
    sched.start()
    try:
        first = job_of(media_model, "hello", max_tokens=20)
        sched.submit(first)
        error = first.future.exception(timeout=WAIT_S)
        assert (error.status, error.code) == (500, "generation_failed") and "a bug in adopt" in error.message
        second = job_of(media_model, "hello again", max_tokens=20)
        sched.submit(second)
        assert isinstance(second.future.result(timeout=WAIT_S), JobResult)
    finally:
        sched.stop()
