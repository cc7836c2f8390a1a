"""Speech played while the LM writes it: layer-1 speech codes arriving one frame at a time ->
AudioChunk events, for anygpt.lm.streaming.ReplyStreamer (through AnyGPT.media_stream).

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

from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class AudioChunk:
    samples: torch.Tensor  # FloatTensor [S] mono in [-1, 1]
    sample_rate: int
    start_frame: int  # first code frame of the segment the chunk covers
    final: bool  # the last chunk of its segment


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



def speech_audio_stream(tokenizer, emit: Callable[[AudioChunk], None], **options) -> SpeechAudioStream | None:
    """A SpeechAudioStream for a two-stage speech tokenizer (one with `fill_acoustic`), else None."""
    if not hasattr(tokenizer, "fill_acoustic"):
        return None
    return SpeechAudioStream(tokenizer, emit, **options)
