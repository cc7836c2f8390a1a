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
                                     window as soon as enough frames exist (SpeechAudioStream)
    Done()                           the reply ended (whatever the reason)
  A server turns these into OpenAI server-sent events (delta.content, delta.audio).

Speech on a sliding window (`SpeechAudioStream`): the LM writes layer-1 codes at the tokenizer's
frame rate (25 Hz for speech-tokenizer-tiny). Once `first_frames` new frames exist (default 8,
0.32 s of audio), the second stage fills their acoustic layers: SoundStorm reads the voice prompt
plus up to `context_frames` already-filled frames of this reply as its prompt, so the voice and
the codes carry over from chunk to chunk; then the codec decodes the window from `context_frames`
before the first unsent frame and the samples of the new frames are sent, keeping back the last
`lookahead_frames` (the decoder is not causal: its last samples change once more frames
follow) until the next chunk or the segment's end. Chunks after the first wait for
`chunk_frames` new frames. SoundStorm dominates the first chunk's latency (about 20 passes over
the ~60-frame voice prompt plus the new frames), so the first chunk uses `first_steps` MaskGIT
iterations (default 8 for acoustic layer 2 instead of the tokenizer's 16; None: the
tokenizer's) and later chunks the tokenizer's own. The streamed audio is therefore close to, not bit-identical with,
`AnyGPT.decode_media` of the whole segment (which fills every frame in one pass).
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
class AudioChunk:
    samples: torch.Tensor  # FloatTensor [S] mono in [-1, 1]
    sample_rate: int
    start_frame: int  # first code frame of the segment the chunk covers
    final: bool  # the last chunk of its segment


@dataclass
class Done:
    pass


Event = TextDelta | SegmentDone | AudioChunk | Done


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


# ----------------------------------------------------------------------------- speech audio
class SpeechAudioStream:
    """Layer-1 speech codes arriving one frame at a time -> AudioChunk events.

    tokenizer: a two-stage speech tokenizer (anygpt.modalities.speech_stage2: `fill_acoustic`'s
    acoustic model and prompt, `decode_all_layers`, `hop`, `sample_rate`); voice_prompt: as
    `prompt_codes` takes it (None: the tokenizer's default voice); emit: called with each chunk."""

    def __init__(self, tokenizer, emit: Callable[[AudioChunk], None], *, voice_prompt: Any = None,
                 seed: int = 0, first_frames: int = 8, chunk_frames: int = 25, context_frames: int = 25,
                 lookahead_frames: int = 2, first_steps: tuple[int, ...] | None = (8, 1)):
        self.tok = tokenizer
        self.emit = emit
        self.prompt = tokenizer.prompt_codes(voice_prompt)  # LongTensor [K, P] or None
        self.gen = torch.Generator().manual_seed(seed)
        self.first_frames, self.chunk_frames = first_frames, chunk_frames
        self.context_frames, self.lookahead = context_frames, lookahead_frames
        self.first_steps = first_steps or tokenizer.steps
        self.semantic: list[int] = []
        self.filled: torch.Tensor | None = None  # LongTensor [K, T_filled], all layers
        self.sent = 0  # frames whose samples were emitted

    def add(self, code: int) -> None:
        self.semantic.append(code)
        pending = len(self.semantic) - self.sent
        need = self.first_frames if self.sent == 0 else self.chunk_frames
        if pending >= need + self.lookahead:
            self._chunk(final=False)

    def finish(self) -> None:
        if len(self.semantic) > self.sent:
            self._chunk(final=True)
        elif self.sent:
            self.emit(AudioChunk(torch.zeros(0), self.tok.sample_rate, self.sent, True))

    @torch.inference_mode()
    def _chunk(self, final: bool) -> None:
        self._fill()
        total = len(self.semantic)
        upto = total if final else total - self.lookahead
        lo = max(0, self.sent - self.context_frames)
        wav = self.tok.decode_all_layers(self.filled[None, :, lo:total])[0, 0].clamp(-1.0, 1.0)
        hop = self.tok.hop
        samples = wav[(self.sent - lo) * hop: (upto - lo) * hop].clone()
        self.emit(AudioChunk(samples, self.tok.sample_rate, self.sent, final))
        self.sent = upto

    def _fill(self) -> None:
        """Acoustic layers for the frames not filled yet, prompted by the voice and the context."""
        done = 0 if self.filled is None else self.filled.shape[1]
        new = torch.tensor(self.semantic[done:], dtype=torch.long)[None]  # [1, N]
        acoustic = self.tok.acoustic
        if acoustic is None:  # a tokenizer without its second stage decodes layer 1 alone
            layers = new[:, None]
        else:
            parts = []
            if self.prompt is not None:
                parts.append(self.prompt)
            if self.filled is not None:
                parts.append(self.filled[:, -self.context_frames:])
            kw = {}
            if parts:
                ctx = torch.cat(parts, dim=1)
                kw = dict(prompt_semantic=ctx[0][None], prompt_acoustic=ctx[1:].T[None])
            steps = self.first_steps if self.filled is None else self.tok.steps
            fill = acoustic.generate(new, steps=steps, generator=self.gen, **kw)  # [1, N, K-1]
            layers = torch.cat([new[:, None], fill.transpose(1, 2)], dim=1)
        self.filled = layers[0] if self.filled is None else torch.cat([self.filled, layers[0]], dim=1)


# ----------------------------------------------------------------------------- reply streamer
class ReplyStreamer:
    """A BaseStreamer-shaped consumer of one reply's ids that emits Events (see module doc).

    model: the AnyGPT whose tokenizer, layout, template and modality tokenizers are used;
    on_event: optional callback; audio: decode speech to AudioChunk events (needs a speech
    tokenizer with `fill_acoustic`); voice_prompt, seed: for the speech second stage; audio
    options (first_frames, chunk_frames, ...) go to SpeechAudioStream."""

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
        self.speech: SpeechAudioStream | None = None
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

    def _speech_stream(self, modality: str) -> SpeechAudioStream | None:
        tok = self.model.tokenizers.get(modality)
        if not self.audio or modality != "speech" or tok is None or not hasattr(tok, "fill_acoustic"):
            return None
        return SpeechAudioStream(tok, self._emit, **self.audio_kw)

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
