"""The chat service both front ends share (the HTTP API and the Gradio demo): configuration,
media cache and scheduler around one model."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from anygpt.serve.jobs import Job, build_job, max_text_bytes
from anygpt.serve.media import MediaLimits
from anygpt.serve.media_cache import MediaCache
from anygpt.serve.scheduler import JobResult, Scheduler
from anygpt.serve.schemas import ChatRequest

SWITCH_INTERVAL_S = 0.0005  # Python's GIL switch interval while serving (default 0.005; see start)


@dataclass
class ServeConfig:
    """model_name: the id clients send and /v1/models lists; api_key: None = no key asked;
    timeout: seconds per request, queue time included; max_body_bytes: whole request body;
    limits: per attachment; cache_items: media cache entries; engine: the decoder backend
    (anygpt.lm.backends.BACKENDS)."""

    model_name: str
    api_key: str | None = None
    max_batch: int = 8
    max_queue: int = 64
    timeout: float = 300.0
    max_body_bytes: int = 32 << 20
    limits: MediaLimits = field(default_factory=MediaLimits)
    cache_items: int = 256
    quantize: str | None = None
    engine: str = "engine"
    threads: int | None = None
    retry_after: int = 1
    reserve_kv: bool = False  # take the whole KV cache at start (steady memory; see Scheduler)
    continuous: bool = True  # False: whole batches run to their end (the old scheduler, for benchmarks)
    intake_thread: bool = True  # False: new requests are prefilled on the decode thread (for benchmarks)


class ChatService:
    def __init__(self, model, config: ServeConfig):
        self.model = model
        self.config = config
        self.cache = MediaCache(config.cache_items)
        self.scheduler = Scheduler(model, self.cache, max_batch=config.max_batch, max_queue=config.max_queue,
                                   quantize=config.quantize, backend=config.engine, threads=config.threads,
                                   retry_after=config.retry_after, reserve_kv=config.reserve_kv,
                                   continuous=config.continuous, intake_thread=config.intake_thread)
        context = self.scheduler.context_tokens
        self.max_text_bytes = max_text_bytes(model.tokenizer, context)
        self._switch_before: float | None = None
        # a server loads every media tokenizer now, not on the first reply that needs one (the
        # music de-tokenizer's load took ~0.1 s inside the first music reply, holding up the batch)
        list(model.tokenizers.values())

    def start(self) -> "ChatService":
        # the scheduler thread drops the GIL in every torch op and C++ step; with the default 5 ms
        # switch interval, a busy request thread (parsing a burst of requests, writing streams)
        # then keeps it up to 5 ms each time, and a decode step waited ~100 ms in a burst of 24
        # requests (benchmarks/bench_serve.py --mix: burst TTFT p95 0.17 s -> 0.08 s at 0.5 ms)
        self._switch_before = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.scheduler.start()
        return self

    def stop(self) -> None:
        self.scheduler.stop()
        if self._switch_before is not None:
            sys.setswitchinterval(self._switch_before)
            self._switch_before = None

    def job(self, request: ChatRequest) -> Job:
        """A checked request -> Job (raises APIError naming the field at fault)."""
        return build_job(request, self.model, self.cache, self.config.limits, model_name=self.config.model_name,
                         timeout=self.config.timeout, max_text=self.max_text_bytes,
                         context_tokens=self.scheduler.context_tokens)

    def complete(self, request: ChatRequest) -> JobResult:
        """Run one request to the end, blocking (the demo's path; the HTTP API waits asynchronously)."""
        job = self.job(request)
        self.scheduler.submit(job)
        try:
            return job.future.result(timeout=job.timeout + 5)
        except TimeoutError:
            job.cancel.set()
            raise

    def health(self) -> dict:
        return {"status": "ok", "model": self.config.model_name, "queued": self.scheduler.queued,
                "running": self.scheduler.running, "batches": self.scheduler.batches,
                "largest_batch": self.scheduler.largest_batch, "media_cache": self.cache.stats()}
