"""The decoder contract: what a server (or chat, or a benchmark) needs from a generation backend,
and all it may call. Our engine (anygpt.lm.engine) implements it; a C++ or ONNX backend can
implement it too, and the server will not know the difference.

A decoder holds a running batch of at most `max_batch` requests, each in its own KV slot, and
advances all of them one token per `step`. Requests join (`prefill`) and leave (finish,
`cancel`, `free`) at step boundaries, so a short request that arrives while a long one runs
starts at the next step instead of waiting for the long one to end (continuous batching).

    dec = engine.decoder()                     # a Decoder
    a = dec.prefill(Request(ids, settings, generator=7, streamer=s, stop_ids=[2]))
    while dec.running:
        for done in dec.step():                # the requests that finished in this step
            done.result                        # Result(ids, finish_reason, prompt_tokens)
        if dec.has_room: dec.prefill(next_request)   # joins the running batch
    dec.close()                                # frees every slot and the cache

A backend (`Backend`) is what makes decoders: our Engine (AnyGPT.engine(...)), later a C++
or ONNX runtime. The server holds one backend and asks it for one decoder.

The five operations:
- prefill(request) -> Slot: checks the request (EngineError / GenerationSettingsError naming the
  problem, raised for this request alone: nothing else in the batch is touched), runs its
  prompt into a free slot and joins the running batch. Raises EngineError if no slot is free.
- step() -> list[Slot]: one token for every running request; returns those that finished
  (each with `.result`), whose slots are already free.
- cancel(slot): the request ends at the next step with finish_reason "cancelled" (the
  request's `cancel` event, read every step, does the same from another thread).
- stream: every request's `streamer` (transformers' BaseStreamer shape) gets `put(ids)` with
  LongTensor [n] of its new ids as they are chosen, and `end()` exactly once when it leaves
  the batch, whatever the reason (stop, length, cancel, error).
- free(slot) / close(): drop a request now (its streamer ends) / every request and the cache.

Per request, never per batch: sampling comes from the request's own generator (the same
request gives the same tokens whatever shares its batch), and its token budget is its own
max_new_tokens cut to what its own prompt leaves of max_len (finish_reason "length" then).
A streamer that raises fails only its own request: the step drops that request (its
streamer's end() is still called), finishes the step for the others, then raises
RequestFailed naming the slot, the streamer's exception as its cause.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from anygpt.errors import AnyGPTError
from anygpt.lm.generation import GenerationSettings


class EngineError(AnyGPTError, ValueError):
    """A request the engine cannot run (too long for the cache, empty prompt, beam search)."""


class PromptTooLong(EngineError):
    """The prompt leaves no room for a reply in the model's context (a conversation that has
    outgrown it: drop earlier turns)."""


class RequestFailed(AnyGPTError):
    """A request's streamer raised during a step; that request (`slot`) left the batch, the
    others went on. The streamer's exception is the cause."""

    def __init__(self, slot: "Slot"):
        super().__init__(f"a request's streamer failed ({slot.request.streamer!r}); that request was dropped")
        self.slot = slot


@dataclass
class Request:
    """One generation job. prompt: LongTensor [L] or list of ids (already templated)."""

    prompt: Any
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    generator: torch.Generator | int | None = None  # None: seed 0
    stop_ids: Sequence[int] = ()
    stop_strings: Sequence[str] = ()
    streamer: Any = None
    cancel: threading.Event | None = None
    logit_bias: torch.Tensor | None = None  # FloatTensor [V] added to the logits before the constraint


@dataclass
class Result:
    ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int


class Slot(Protocol):
    request: Request
    result: Result | None  # set once the request has left the batch


@runtime_checkable
class Backend(Protocol):
    """A loaded model ready to decode. max_len: the longest prompt + reply of one request;
    max_batch: requests a decoder runs at once; vocab_size: the length of a logit bias.
    Optional: `concurrent` True when two of its decoders may run at once on two threads and one
    may adopt the other's rows (`decoder.step(adopt=[other])`, anygpt.lm.engine.ContinuousBatch;
    the server's intake thread uses it); absent means False."""

    max_len: int
    max_batch: int

    @property
    def vocab_size(self) -> int: ...

    def decoder(self, *, reserve: bool = False) -> "Decoder":
        """A new, empty running batch; reserve: take all its KV memory now."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """A running batch (see the module docstring). max_len: the longest prompt + reply one
    request may have; max_batch: requests running at once."""

    max_len: int
    max_batch: int

    @property
    def running(self) -> int: ...

    @property
    def has_room(self) -> bool: ...

    def prefill(self, request: Request) -> Slot: ...

    def step(self) -> list[Slot]: ...

    def cancel(self, slot: Slot) -> None: ...

    def free(self, slot: Slot) -> None: ...

    def close(self) -> None: ...
