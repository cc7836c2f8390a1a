"""Streaming a reply while it is generated: ids -> text deltas, media segments, audio chunks.

Two levels:
- The engine (and HF generate) call a streamer in transformers' `BaseStreamer` shape:
  `put(ids)` with LongTensor [n] of new reply ids, then `end()` once. `ReplyStreamer` is one.
- `ReplyStreamer` turns the ids into events, delivered to `on_event(event)` and queued for
  iteration (`for event in streamer: ...` from another thread; the iterator ends after `Done`):
    TextDelta(text)                  new reply text (turn-end string and what follows it withheld)
    SegmentDone(part)                a CodesPart, as soon as its end marker arrives
    AudioChunk(samples, sample_rate, start_frame, final)
                                     for speech: FloatTensor [S] of audio, decoded on a sliding
                                     window as soon as enough frames exist (the model's media
                                     stream; anygpt.modalities.speech_streaming)
    Done()                           the reply ended (whatever the reason)
  A server turns these into OpenAI server-sent events (delta.content, delta.audio).

Media that can be played while they are written (speech) are decoded by a stream that the
model provides (`AnyGPT.media_stream`, which for speech is
anygpt.modalities.speech_streaming.SpeechAudioStream): the LM side passes codes on and knows
nothing of audio.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from anygpt.parts import CodesPart


# ----------------------------------------------------------------------------- events
@dataclass
class TextDelta:
    text: str


@dataclass
class SegmentDone:
    part: CodesPart


@dataclass
class Done:
    pass


Event = TextDelta | SegmentDone | Done | Any  # Any: a media stream's events (AudioChunk)


class SkipPrompt:
    """Wraps a streamer for HF generate, whose first put() is the prompt: drops that one."""

    def __init__(self, streamer):
        self.streamer, self.first = streamer, True

    def put(self, ids: torch.Tensor) -> None:
        if self.first:
            self.first = False
            return
        self.streamer.put(ids.reshape(-1))

    def end(self) -> None:
        self.streamer.end()


# ----------------------------------------------------------------------------- reply streamer
class ReplyStreamer:
    """A BaseStreamer-shaped consumer of one reply's ids that emits Events (see module doc).

    model: the AnyGPT whose tokenizer, layout, template and modality tokenizers are used;
    on_event: optional callback; audio: decode media that can be played while written (speech)
    with the model's `media_stream` (AudioChunk events); voice_prompt, seed and the other
    options (first_frames, chunk_frames, ...) go to that stream."""

    def __init__(self, model, *, on_event: Callable[[Event], None] | None = None, audio: bool = True,
                 voice_prompt: Any = None, seed: int = 0, **audio_options):
        self.model = model
        self.layout = model.layout
        self.tokenizer = model.tokenizer
        self.on_event = on_event
        self.stop_ids = set(model.stop_ids)
        self.turn_end = model.template.bot_end
        self.audio = audio
        self.audio_kw = dict(voice_prompt=voice_prompt, seed=seed, **audio_options)
        self.events: queue.Queue[Event] = queue.Queue()
        self.text_run: list[int] = []
        self.run_sent = 0  # characters of the current text run already emitted
        self.seg = None  # the open ModalityRange
        self.codes: list[int] = []
        self.speech: Any = None  # the open segment's media stream (add(code), finish()), if any
        self.ended = False  # turn end seen: ignore the rest
        self.closed = False

    # ------------------------------------------------------------- BaseStreamer
    def put(self, ids: torch.Tensor) -> None:
        for i in torch.as_tensor(ids).reshape(-1).tolist():
            self._token(int(i))

    def end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._flush_text(final=True)
        if self.seg is not None and self.speech is not None:
            self.speech.finish()
        self._emit(Done())

    def resume(self) -> None:
        """Go on with the same reply after its turn end: the ids put next continue it (a server
        that appends a segment the client asked for, after the model ended its turn). Text held
        back as a possible turn end is dropped. Not after `end()`."""
        if self.closed:
            raise RuntimeError("ReplyStreamer.resume() after end()")
        self._flush_text(final=True)
        self.ended = False

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.events.get()
            yield ev
            if isinstance(ev, Done):
                return

    # ------------------------------------------------------------- internals
    def _emit(self, ev: Event) -> None:
        self.events.put(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _token(self, i: int) -> None:
        if self.ended or i in self.stop_ids:
            self.ended = self.ended or i in self.stop_ids
            return
        kind, r = self.layout.classify(i)
        if self.seg is None:
            if kind == "start":
                self._flush_text(final=True)
                self.seg, self.codes = r, []
                self.speech = self._speech_stream(r.name)
            elif kind == "text":
                self.text_run.append(i)
                self._flush_text(final=False)
            # a stray code or end marker outside a segment (unconstrained mode) is dropped
            return
        if kind == "code" and r is self.seg:
            self.codes.append(i)
            if self.speech is not None:
                self.speech.add(i - r.code_offset)
        elif kind == "end" and r is self.seg:
            try:
                part = CodesPart(r.name, self.layout.ids_to_codes(r.name, torch.tensor(self.codes)))
            except ValueError:
                part = None  # malformed (unconstrained mode): the final parse reports it
            if part is not None:
                self._emit(SegmentDone(part))
            if self.speech is not None:
                self.speech.finish()
            self.seg, self.speech = None, None

    def _speech_stream(self, modality: str) -> Any:
        if not self.audio:
            return None
        return self.model.media_stream(modality, self._emit, **self.audio_kw)

    def _flush_text(self, final: bool) -> None:
        """Emit the decoded text of the current run past what was sent, holding back an
        incomplete character and any tail that could still become the turn-end string."""
        if not self.text_run:
            return
        text = self.tokenizer.decode(self.text_run)
        cut = text.find(self.turn_end)
        if cut >= 0:
            text, self.ended = text[:cut], True
            final = True
        if not final:
            keep = len(text)
            if text.endswith("\ufffd"):
                keep -= 1
            for n in range(min(len(self.turn_end) - 1, keep), 0, -1):
                if self.turn_end.startswith(text[keep - n:keep]):
                    keep -= n
                    break
            text = text[:keep]
        if len(text) > self.run_sent:
            self._emit(TextDelta(text[self.run_sent:]))
            self.run_sent = len(text)
        if final:
            self.text_run, self.run_sent = [], 0
