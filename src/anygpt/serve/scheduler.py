"""The scheduler: the threads that own the model and its decoders (anygpt.lm.decoder, the engine
contract: prefill, step, cancel, stream, free). Request threads put Jobs on a bounded queue.
The decode thread steps the running batch. The intake thread takes queued jobs into free slots
(continuations first), prefills them into a decoder of its own and chooses their first tokens
there (they stream out) while the decode thread steps on; the decode thread adopts those rows
in its next step, whose forward feeds their first tokens with its own rows'
(ContinuousBatch.step(adopt=...)). So a short text request that arrives
during a long music reply waits for its own prefill, not for the step in progress, and leaves
the batch as soon as it is done. An engine that cannot run two decoders at once (llama.cpp,
ONNX Runtime: Engine.concurrent False) has no intake thread: the decode thread admits jobs
between two steps, and they join at the next step boundary.

A job's life: its media are encoded (or found in the media cache), its prompt is built from
the chat template, then
  pass 1   the model writes its turn (media not asked for are banned by max_frames 0; with
           `force` the reply starts with that modality's start marker);
  pass 2.. for each modality in `ensure` the reply still lacks, the reply so far is extended by
           that modality's start marker and generated on (so `modalities: ["text", "image"]`
           always gets its image);
then its media are rendered (PNG, WAV...) on a render thread, so decoding the others goes on,
and its future resolved. Streaming jobs get events (text deltas, speech audio chunks, each
image or music piece as it completes) through `job.emit` while they run. A streamed image or
music piece is rendered on the render thread too (a music piece takes ~0.1 s to decode: on the
scheduler thread it held up every running request's next token); the job's later events then
queue behind it there, so each job's events keep their order.

Jobs that join between the same two steps are prefilled together (ContinuousBatch.prefill_many:
one forward per group of similar prompts, each starting from the longest prompt prefix the
decoder has kept, e.g. the chat template's system prompt); short jobs are admitted before long
ones.

Everything that can fail is per job: preparing it (bad media, a context overflow, settings)
or the decoder's check of it fails that job alone before it joins; a failing streamer drops
only its own request; a job whose cancel event is set (client gone, timeout) leaves the batch
at the next step. A full queue raises a 503 APIError with Retry-After.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import torch

from anygpt.errors import AnyGPTError
from anygpt.lm.decoder import EngineError, RequestFailed
from anygpt.lm.engine import AdoptionRefused
from anygpt.lm.streaming import ReplyStreamer, SegmentDone, TextDelta
from anygpt.modalities.speech_streaming import AudioChunk
from anygpt.parts import CodesPart, TextPart, append_text
from anygpt.serve.errors import APIError
from anygpt.serve.jobs import Job, PendingMedia
from anygpt.serve.media import audio_bytes, png_bytes
from anygpt.serve.media_cache import MediaCache, content_key
from anygpt.templates import Turn, parse_spoken_reply

log = logging.getLogger("anygpt.serve")

# Admission policy (measured with benchmarks/bench_serve.py --mix, docs/serve.md): between two
# steps every waiting job that finds a slot joins, short ones first, prefilled together; while
# requests run, the jobs joining in one pass hold at most ADMIT_TOKENS prompt tokens, so that a
# burst of long prompts does not stall the running replies for long (anygpt-tiny: a 55-token
# chat prompt is ~12 ids to compute once its system prompt is kept; 24 such prompts prefill in
# ~0.1 s on one core). Requests allowed more than LONG_REPLY tokens (music, speech) hold at most
# all but a quarter of the slots, so that short requests always find one free while long
# replies run.
ADMIT_TOKENS = 2048
LONG_REPLY = 512
# The intake thread's decoders: while some wait for the decode thread to adopt their rows (up to
# a step), the next takes new jobs.
STAGING_DECODERS = 4


# ----------------------------------------------------------------------------- what jobs yield
@dataclass
class RenderedMedia:
    """One media part of a reply as bytes: image PNG, or audio in the job's audio format."""

    modality: str
    data: bytes
    format: str  # "png", "wav", "pcm16", "flac"
    sample_rate: int | None = None
    audio_id: str | None = None  # speech: the id a later turn may refer to


@dataclass
class JobResult:
    parts: list  # TextPart | CodesPart, the whole reply
    media: list[RenderedMedia]  # one per CodesPart, in order (empty for streamed jobs: already sent)
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart)).strip()

    @property
    def transcript(self) -> str:
        """What the reply's speech says: the reply text (the part after '<-Res->' in the spoken format)."""
        return parse_spoken_reply(self.parts).reply


@dataclass
class SpeechAudio:
    """Streamed: a piece of a speech segment's audio (samples FloatTensor [S])."""

    audio_id: str
    samples: torch.Tensor
    sample_rate: int


@dataclass
class SpeechDone:
    """Streamed: a speech segment is complete (all its audio was sent)."""

    audio_id: str
    transcript: str


@dataclass
class MediaDone:
    """Streamed: an image or music piece is complete."""

    media: RenderedMedia


@dataclass
class Finished:
    result: JobResult


@dataclass
class Failed:
    error: APIError


# ----------------------------------------------------------------------------- a job in flight
@dataclass
class _Run:
    job: Job
    prompt: list = field(default_factory=list)  # the chat template's prompt (media as CodesPart)
    parts: list = field(default_factory=list)  # the reply so far
    force: str | None = None  # this pass starts with this modality
    passes: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    voice: torch.Tensor | None = None  # voice prompt codes [K, P], None: the default voice
    streamer: ReplyStreamer | None = None
    text: str = ""  # streamed text so far
    audio_id: str | None = None  # the speech segment being streamed
    speech_codes: torch.Tensor | None = None  # its codes, once complete
    # the last of this job's events queued on the render thread behind a media piece being
    # rendered; while it is not done, the job's events queue there too (their order kept)
    queued: Future | None = None


class _HeldStreamer:
    """Passes the engine's ids on, but not its end(): a reply may go on in another pass."""

    def __init__(self, streamer: ReplyStreamer):
        self.streamer = streamer

    def put(self, ids: torch.Tensor) -> None:
        self.streamer.put(ids)

    def end(self) -> None:
        pass


class Scheduler:
    """model: AnyGPT; cache: the media cache shared with the request threads; max_batch: requests
    decoded together; max_queue: jobs waiting (beyond it, submit raises 503); quantize: int8
    weights; backend: the decoder backend (anygpt.lm.backends); retry_after: seconds a rejected client is told to wait; reserve_kv: take the decoder's
    whole KV cache at start (a steady memory footprint instead of one that grows with replies);
    continuous: False admits jobs only when the batch is empty, each batch running to its end
    (the scheduler before issue 25; kept to measure against); intake_thread: new jobs are
    prefilled, and get their first token, on a second thread while the decode thread steps the
    running batch (when the engine allows concurrent decoders, Engine.concurrent; else, and with
    False, the decode thread prefills them between two steps)."""

    def __init__(self, model, cache: MediaCache, *, max_batch: int = 8, max_queue: int = 64,
                 quantize: str | None = None, backend: str = "engine", threads: int | None = None,
                 retry_after: int = 1,
                 reserve_kv: bool = False, continuous: bool = True, intake_thread: bool = True):
        if max_queue < 1:
            raise ValueError(f"max_queue={max_queue}: must be at least 1")
        self.model = model
        self.cache = cache
        self.engine = model.engine(quantize=quantize, max_batch=max_batch, backend=backend)  # anygpt.lm.decoder.Backend
        self.max_batch = max_batch
        self.threads = threads
        self.retry_after = retry_after
        self.reserve_kv = reserve_kv
        self.continuous = continuous
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._continuing: list[_Run] = []
        self._waiting: list[_Run] = []  # taken from the queue, waiting for a slot (long: for a long slot)
        self._slots: dict[int, tuple[_Run, list[int], object]] = {}  # id(slot) -> (run, start, slot)
        self._decoder = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="anygpt-scheduler", daemon=True)
        # the intake thread (see _intake_loop): its decoders (up to STAGING_DECODERS, so that it
        # can take new jobs while earlier ones wait to be adopted), those free and those waiting for
        # the decode thread, the rows they hold (id(slot) -> (run, start, slot)), and the wake-ups
        self._intake = None
        if intake_thread and getattr(self.engine, "concurrent", False):
            self._intake = threading.Thread(target=self._intake_loop, name="anygpt-intake", daemon=True)
        self._stagings: list = []
        self._free_stagings: queue.SimpleQueue = queue.SimpleQueue()
        self._to_adopt: queue.SimpleQueue = queue.SimpleQueue()
        self._staged: dict[int, tuple[_Run, list[int], object]] = {}
        self._lock = threading.Lock()  # _slots and _staged, which both threads read
        self._adopt_wake = threading.Event()  # -> decode: staged rows are ready
        self._intake_wake = threading.Event()  # -> intake: a job queued, a slot freed, a decoder free
        self._renderer = ThreadPoolExecutor(1, thread_name_prefix="anygpt-render")
        self.batches = 0  # decode steps made (tests and /health read it)
        self.largest_batch = 0

    # ------------------------------------------------------------- public
    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, cancel what runs, fail what waits, and join the thread."""
        self._stop.set()
        for run, _, _ in list(self._slots.values()):
            run.job.cancel.set()
        for run in list(self._continuing) + list(self._waiting):
            run.job.cancel.set()
        self._thread.join(timeout)
        self._renderer.shutdown(wait=True)
        closing = APIError(503, "the server is shutting down", code="shutting_down")
        for run in self._continuing + self._waiting:
            self._fail(run, closing)
        self._continuing, self._waiting = [], []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            self._fail_job(job, closing)

    def submit(self, job: Job) -> None:
        if self._stop.is_set():
            raise APIError(503, "the server is shutting down", code="shutting_down")
        try:
            if self.queued >= self._queue.maxsize:  # jobs taken from the queue still wait
                raise queue.Full
            self._queue.put_nowait(job)
            self._intake_wake.set()
        except queue.Full:
            raise APIError(503, f"the server is busy: {self._queue.maxsize} requests are waiting; retry in "
                                f"{self.retry_after} s", code="server_busy",
                           headers={"Retry-After": str(self.retry_after)}) from None

    @property
    def queued(self) -> int:
        return self._queue.qsize() + len(self._waiting)

    @property
    def running(self) -> int:
        """Requests in the batch, those the intake thread holds for their first token included."""
        return len(self._slots) + len(self._staged)

    @property
    def context_tokens(self) -> int:
        """The longest prompt plus reply one request may have."""
        return self.engine.max_len

    # ------------------------------------------------------------- the loop
    def _loop(self) -> None:
        """The decode thread: steps the running batch. Without an intake thread it also admits
        jobs between two steps; with one, it adopts the rows the intake thread staged."""
        if self.threads:
            torch.set_num_threads(self.threads)
        self._decoder = self.engine.decoder(reserve=self.reserve_kv)
        if self._intake is not None:
            self._intake.start()
        try:
            while not self._stop.is_set():
                if self._intake is None:
                    self._expire_waiting()
                    self._admit()
                    handed = []
                else:
                    self._adopt_wake.clear()
                    handed = self._handed_over()
                if self._slots or handed:
                    self._step(self._decoder, self._slots, adopt=handed)
                elif self._intake is not None:
                    self._adopt_wake.wait(0.05)
        finally:
            self._stop.set()  # also after a crash of this loop: the intake thread must not wait on it
            self._intake_wake.set()
            if self._intake is not None and self._intake.is_alive():
                self._intake.join()
            closing = APIError(503, "the server is shutting down", code="shutting_down")
            for run, _, _ in list(self._slots.values()) + list(self._staged.values()):
                self._fail(run, closing)
            self._staged = {}
            self._close_decoder()

    def _intake_loop(self) -> None:
        """The intake thread: takes queued jobs, prefills them into a decoder of its own and
        chooses their first tokens there (they stream out), while the decode thread steps the
        running batch; then hands that decoder over and goes on with another. The decode thread
        adopts the rows in its next step, whose forward feeds their first tokens with its own
        (ContinuousBatch.step(adopt=...)). A short request's first token so waits for its own
        prefill, not for the step in progress."""
        if self.threads:
            torch.set_num_threads(self.threads)
        while not self._stop.is_set():
            self._intake_wake.clear()
            self._expire_waiting()
            staging = self._free_staging()
            if staging is None or not self._admit(staging, self._staged):
                if staging is not None:
                    self._free_stagings.put(staging)
                self._intake_wake.wait(0.05)
                continue
            if not self._step(staging, self._staged, feed=False):  # it failed as a whole and was closed
                staging = self._replace_staging(staging)
            if staging.running:
                self._to_adopt.put(staging)
                self._adopt_wake.set()
            else:
                self._free_stagings.put(staging)

    def _free_staging(self):
        """Intake thread: a free staging decoder, a new one while there are fewer than
        STAGING_DECODERS, else None (all wait to be adopted)."""
        try:
            return self._free_stagings.get_nowait()
        except queue.Empty:
            return self._replace_staging() if len(self._stagings) < STAGING_DECODERS else None

    def _replace_staging(self, closed=None):
        """A new staging decoder, in place of `closed` (one that failed) if given."""
        if closed is not None:
            self._stagings.remove(closed)
        staging = self.engine.decoder()
        self._stagings.append(staging)
        return staging

    def _handed_over(self) -> list:
        """Decode thread: the staging decoders the intake thread handed over, oldest first."""
        handed = []
        while True:
            try:
                handed.append(self._to_adopt.get_nowait())
            except queue.Empty:
                return handed

    def _admit(self, dec=None, slots: dict | None = None) -> bool:
        """Fill free slots of the batch, prefilling into `dec` and recording the rows in `slots`
        (default: the decode thread's decoder and running rows): continuations first, then
        waiting short jobs, then long ones while a long slot is free (waiting a little for a job
        only when nothing runs). Each job is prepared on its own, then the prepared ones are
        prefilled together; a job that fails either step fails alone. -> whether any joined."""
        dec, slots = (self._decoder, self._slots) if dec is None else (dec, slots)
        if not self.continuous and (self._slots or self._staged):
            return False
        self._take_queued(wait=dec is self._decoder and not self._slots and not self._waiting
                          and not self._continuing)
        with self._lock:
            held = len(self._slots) + len(self._staged)
            long_running = sum(_is_long(run) for run, _, _ in list(self._slots.values()) + list(self._staged.values()))
        free = self.max_batch - held
        budget = ADMIT_TOKENS if held else None
        long_slots = max(1, self.max_batch - max(1, self.max_batch // 4)) if self.continuous else self.max_batch
        ready: list[tuple[_Run, object, list[int]]] = []
        tokens = 0
        while len(ready) < free and (budget is None or tokens < budget) and not self._stop.is_set():
            run = self._next(long_slots - long_running)
            if run is None:
                break
            long_running += _is_long(run)
            try:
                request, start = self._request(run)
            except Exception as e:  # noqa: BLE001 - that job fails, the others go on
                self._fail_preparing(run, e)
                continue
            ready.append((run, request, start))
            tokens += int(torch.as_tensor(request.prompt).numel())
        if not ready:
            return False
        joined = False
        for (run, _, start), slot in zip(ready, _prefill(dec, [request for _, request, _ in ready])):
            if isinstance(slot, BaseException):
                self._fail_preparing(run, slot)
            else:
                with self._lock:
                    slots[id(slot)] = (run, start, slot)
                joined = True
        return joined

    def _fail_preparing(self, run: _Run, e: BaseException) -> None:
        """A job that could not join the batch fails with the API error its exception means."""
        if isinstance(e, APIError):
            self._fail(run, e)
        elif isinstance(e, EngineError):
            self._fail(run, APIError(400, f"messages: {e}", param="messages", code="invalid_request"))
        elif isinstance(e, AnyGPTError):
            self._fail(run, APIError(400, str(e), code="invalid_request"))
        else:  # a bug fails this job, not the others
            log.error("preparing a request failed", exc_info=e)
            self._fail(run, APIError(500, f"preparing the request failed: {e}", code="internal_error"))

    def _take_queued(self, wait: bool) -> None:
        """Move every queued job to the waiting list (expired or cancelled ones fail); wait: block
        up to 50 ms for the first one (nothing runs)."""
        while True:
            try:
                job = self._queue.get(timeout=0.05) if wait else self._queue.get_nowait()
            except queue.Empty:
                return
            wait = False
            if not self._expired(job):
                self._waiting.append(_Run(job, force=job.force))

    def _next(self, long_free: int) -> "_Run | None":
        """The next run to admit: a continuation, else the first waiting short job, else the first
        waiting long one if long_free (long slots not held) > 0."""
        if self._continuing:
            return self._continuing.pop(0)
        run = next((r for r in self._waiting if not _is_long(r)), None)
        if run is None and long_free > 0:
            run = next(iter(self._waiting), None)
        if run is not None:
            self._waiting.remove(run)
        return run

    def _step(self, dec, slots: dict, *, feed: bool = True, adopt: list = ()) -> bool:
        """One step of `dec`, whose rows `slots` records (the decode thread's batch, or the
        intake thread's staged rows): finished rows go on to _after. feed, adopt: see
        ContinuousBatch.step; the adopted rows move from _staged to `slots` and their staging
        decoders go back to the intake thread. -> False when the step failed as a whole (its
        requests failed, the decoder must be replaced)."""
        if dec is self._decoder:
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(slots) + sum(st.running for st in adopt))
        # the rows `dec` holds (the intake thread's `slots` also holds other staging decoders')
        own = [id(slot) for slot in getattr(dec, "rows", ())] or list(slots)
        adopting = [slot for st in adopt for slot in st.rows]
        try:
            try:
                # the contract's plain step() unless the intake thread's rows are involved
                finished = dec.step(feed=feed, adopt=adopt) if adopt or not feed else dec.step()
            except AdoptionRefused as e:  # a bug: those requests fail, the batch goes on
                log.exception("adopting the staged requests failed")
                self._fail_staged(adopt, adopting, e)
                adopt, adopting = [], []
                finished = dec.step()
        except RequestFailed as e:  # that request's streamer failed; it already left the batch
            with self._lock:
                run, _, _ = slots.pop(id(e.slot))
            self._intake_wake.set()
            log.error("streaming a reply failed: %r", e.__cause__)
            self._fail(run, APIError(500, f"streaming the reply failed: {e.__cause__}", code="internal_error"))
            return True
        except Exception as e:  # noqa: BLE001 - a bug in a step: its requests fail, the server goes on
            log.exception("a decode step failed")
            self._fail_staged(adopt, adopting, e)
            with self._lock:
                failed = [slots.pop(key) for key in own if key in slots]
            self._intake_wake.set()
            for run, _, _ in failed:
                self._fail(run, APIError(500, f"generation failed: {e}", code="generation_failed"))
            dec.close()
            if dec is self._decoder:
                self._decoder = self.engine.decoder(reserve=self.reserve_kv)
            return False
        if adopt:
            with self._lock:
                for slot in adopting:
                    slots[id(slot)] = self._staged.pop(id(slot))
            for staging in adopt:
                self._free_stagings.put(staging)
            self._intake_wake.set()
        for slot in finished:
            with self._lock:
                run, start, _ = slots.pop(id(slot))
            try:
                self._after(run, start, slot.result)
            except Exception as e:  # noqa: BLE001
                log.exception("finishing a reply failed")
                self._fail(run, APIError(500, f"rendering the reply failed: {e}", code="render_failed"))
        if finished:
            self._intake_wake.set()
        return True

    def _fail_staged(self, stagings: list, rows: list, e: BaseException) -> None:
        """Decode thread: staged rows that could not join fail; their decoders are replaced."""
        with self._lock:
            failed = [self._staged.pop(id(slot)) for slot in rows if id(slot) in self._staged]
        for run, _, _ in failed:
            self._fail(run, APIError(500, f"joining the batch failed: {e}", code="generation_failed"))
        for staging in stagings:
            staging.close()
            self._free_stagings.put(self._replace_staging(staging))
        self._intake_wake.set()

    def _close_decoder(self) -> None:
        for dec in [self._decoder] + self._stagings:
            if dec is not None:
                dec.close()
        self._slots.clear()

    def _expire_waiting(self) -> None:
        for run in [r for r in self._waiting if r.job.cancel.is_set() or time.monotonic() > r.job.deadline]:
            self._waiting.remove(run)
            self._expired(run.job)

    def _expired(self, job: Job) -> bool:
        if job.cancel.is_set():
            self._fail_job(job, APIError(499, "the request was cancelled", code="cancelled"))
            return True
        if time.monotonic() > job.deadline:
            self._fail_job(job, APIError(504, f"timed out after {job.timeout:g} s waiting in the queue",
                                         code="timeout"))
            return True
        return False

    # ------------------------------------------------------------- one pass
    def _request(self, run: _Run):
        job, model = run.job, self.model
        if run.passes == 0:
            turns = [Turn(t.role, [self._encoded(p) for p in t.parts]) for t in job.turns]
            template = replace(model.template, system=job.system) if job.system is not None else model.template
            run.prompt = template.prompt(turns)
            if job.voice is not None:
                run.voice = self._voice_codes(job.voice)
            if job.emit is not None:
                run.streamer = ReplyStreamer(model, on_event=lambda ev: self._on_event(run, ev),
                                             voice_prompt=run.voice, seed=job.seed)
        prompt = list(run.prompt) + list(run.parts)
        if run.force is not None:
            prompt = append_text(prompt, " " + model.layout[run.force].spec.start)
        settings = job.settings[run.force]
        request, start = model.decoder_request(
            prompt, settings, force_modality=run.force, seed=job.seed + run.passes,
            streamer=_HeldStreamer(run.streamer) if run.streamer is not None else None,
            cancel=job.cancel)
        n = int(torch.as_tensor(request.prompt).numel())
        if n >= self.engine.max_len:
            what = "the conversation" if run.passes == 0 else f"the conversation with the reply so far ({run.force} pass)"
            raise APIError(400, f"messages: {what} is {n} tokens long; this model reads at most "
                                f"{self.engine.max_len - 1} tokens, reply included: drop earlier turns or "
                                "shorten the message", param="messages", code="context_length_exceeded")
        if run.passes == 0:
            run.prompt_tokens = n
        return request, start

    def _after(self, run: _Run, start: list[int], result) -> None:
        job = run.job
        if result.finish_reason == "cancelled":
            expired = time.monotonic() > job.deadline
            self._fail(run, APIError(504, f"timed out after {job.timeout:g} s", code="timeout") if expired
                       else APIError(499, "the request was cancelled", code="cancelled"))
            return
        settings = job.settings[run.force]
        run.parts = run.parts + self.model.reply_parts(result.ids, start, settings)
        run.completion_tokens += len(result.ids)
        run.finish_reason = result.finish_reason
        run.passes += 1
        have = {p.modality for p in run.parts if isinstance(p, CodesPart)}
        missing = [m for m in job.ensure if m not in have]
        if missing and run.passes <= len(job.ensure) and not self._stop.is_set():
            run.force = missing[0]
            if run.streamer is not None:
                run.streamer.resume()
            self._continuing.append(run)
            return
        self._finish(run)

    def _finish(self, run: _Run) -> None:
        if run.streamer is not None:
            run.streamer.end()  # flushes the last speech chunk
            self._speech_done(run)
            self._in_order(run, self._resolve, run, [])
        elif any(isinstance(p, CodesPart) for p in run.parts):  # decoding media takes a while: the
            self._renderer.submit(self._render_and_resolve, run)  # render thread does it, decoding goes on
        else:  # text only: nothing to render, so no wait behind another reply's media
            self._resolve(run, [])

    def _render_and_resolve(self, run: _Run) -> None:
        try:
            media = [self._render(run, p) for p in run.parts if isinstance(p, CodesPart)]
        except Exception as e:  # noqa: BLE001
            log.exception("rendering a reply failed")
            self._fail(run, APIError(500, f"rendering the reply failed: {e}", code="render_failed"))
            return
        self._resolve(run, media)

    def _resolve(self, run: _Run, media: list) -> None:
        job = run.job
        result = JobResult(run.parts, media, run.finish_reason, run.prompt_tokens, run.completion_tokens)
        if job.emit is not None:
            job.emit(Finished(result))
        if not job.future.done():
            job.future.set_result(result)

    def _in_order(self, run: _Run, fn, *args) -> None:
        """fn(*args) now, or on the render thread behind the job's queued events (see _Run.queued)."""
        if run.queued is not None and not run.queued.done():
            try:
                run.queued = self._renderer.submit(fn, *args)
                return
            except RuntimeError:  # the render thread was shut down (stop): nothing is queued any more
                pass
        fn(*args)

    # ------------------------------------------------------------- media
    def _encoded(self, part):
        """A turn's part with PendingMedia encoded (and cached)."""
        if not isinstance(part, PendingMedia):
            return part
        codes = self.cache.get(part.key)
        if codes is None:
            try:
                codes = self.model.tokenizers[part.modality].encode_item(part.media)
            except (AnyGPTError, ValueError) as e:
                raise APIError(400, f"{part.modality} attachment: cannot encode it ({e})", code="invalid_media") from None
            self.cache.put(part.key, codes)
        return CodesPart(part.modality, codes)

    def _voice_codes(self, voice: PendingMedia) -> torch.Tensor:
        codes = self.cache.get(voice.key)
        if codes is None:
            with torch.inference_mode():
                codes = self.model.tokenizers["speech"].prompt_codes(voice.media)
            self.cache.put(voice.key, codes)
        return codes

    def _render(self, run: _Run, part: CodesPart) -> RenderedMedia:
        """Decode one media part and remember its codes under the bytes' hash (and the speech's
        id), so that the reply sent back in a later turn is not re-encoded."""
        job = run.job
        context = {"voice_prompt": run.voice, "seed": job.seed} if part.modality == "speech" else {}
        media = self.model.decode_media(part, **context)
        tok = self.model.tokenizers[part.modality]
        if media.dim() == 3:
            rendered = RenderedMedia(part.modality, png_bytes(media), "png")
        else:
            rendered = RenderedMedia(part.modality, audio_bytes(media, tok.sample_rate, job.audio_format),
                                     job.audio_format, tok.sample_rate)
            if part.modality == "speech":
                rendered.audio_id = _audio_id()
                self.cache.put(f"audio:{rendered.audio_id}", part.codes)
        self.cache.put(content_key(part.modality, rendered.data), part.codes)
        return rendered

    # ------------------------------------------------------------- streaming
    def _on_event(self, run: _Run, event) -> None:
        """ReplyStreamer events (the decode or intake thread, inside a step) -> the job's stream
        events. A failure here stops this job only, never the batch."""
        try:
            self._stream_event(run, event)
        except Exception:  # noqa: BLE001
            log.exception("streaming an event failed; cancelling that request")
            run.job.cancel.set()

    def _stream_event(self, run: _Run, event) -> None:
        job = run.job
        if isinstance(event, TextDelta):
            run.text += event.text
            self._in_order(run, job.emit, event)
        elif isinstance(event, AudioChunk):
            if run.audio_id is None:
                run.audio_id = _audio_id()
            self._in_order(run, job.emit, SpeechAudio(run.audio_id, event.samples, event.sample_rate))
            if event.final:
                self._speech_done(run)
        elif isinstance(event, SegmentDone):
            part = event.part
            if part.modality == "speech" and self._streams_speech:
                run.speech_codes = part.codes  # its audio went out in chunks; the last one follows
            else:
                run.queued = self._renderer.submit(self._render_streamed, run, part)

    def _render_streamed(self, run: _Run, part: CodesPart) -> None:
        """Render thread: one streamed media piece -> its MediaDone event (the job fails alone
        if rendering fails)."""
        try:
            media = self._render(run, part)
        except Exception as e:  # noqa: BLE001
            log.exception("rendering a streamed media piece failed")
            run.job.cancel.set()
            self._fail_job(run.job, APIError(500, f"rendering the reply failed: {e}", code="render_failed"))
            return
        run.job.emit(MediaDone(media))

    @property
    def _streams_speech(self) -> bool:
        """Speech is streamed as audio chunks (the tokenizer has the sliding-window second stage)."""
        return hasattr(self.model.tokenizers.get("speech"), "fill_acoustic")

    def _speech_done(self, run: _Run) -> None:
        """After a speech segment's last chunk (or at the end of a reply cut inside one)."""
        if run.audio_id is None:
            return
        if run.speech_codes is not None:
            self.cache.put(f"audio:{run.audio_id}", run.speech_codes)
        self._in_order(run, run.job.emit, SpeechDone(run.audio_id, parse_spoken_reply([TextPart(run.text)]).reply))
        run.audio_id, run.speech_codes = None, None

    # ------------------------------------------------------------- failures
    def _fail(self, run: _Run, error: APIError) -> None:
        if run.streamer is not None and not run.streamer.closed:
            run.streamer.end()
        self._in_order(run, self._fail_job, run.job, error)

    @staticmethod
    def _fail_job(job: Job, error: APIError) -> None:
        if job.emit is not None:
            job.emit(Failed(error))
        if not job.future.done():
            job.future.set_exception(error)


def _prefill(dec, requests: list) -> list:
    """requests -> one slot each in `dec`, or the exception that request raised: in one batched
    call when the decoder has prefill_many (our engine), else one by one."""
    many = getattr(dec, "prefill_many", None)
    if many is not None:
        return many(requests)
    out = []
    for request in requests:
        try:
            out.append(dec.prefill(request))
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


def _is_long(run: _Run) -> bool:
    """A run allowed more than LONG_REPLY tokens in its pass."""
    return run.job.settings[run.force].max_new_tokens > LONG_REPLY


def _audio_id() -> str:
    return f"audio_{uuid.uuid4().hex[:24]}"
