"""anygpt.modalities.audio: mixing down to mono, and encoding / decoding long audio in windows
with context so that the result equals one call over the whole input."""

from __future__ import annotations

import pytest
import torch

from anygpt.errors import MediaError
from anygpt.modalities.audio import chunked_decode, chunked_encode, to_mono

HOP = 4


def neighbour_encoder(calls: list[int]):
    """[B, 1, n*HOP] -> [B, 1, n]: each code depends on its frame and the next (zero past the
    end of the call), so a window without context gets its last code wrong."""
    def encode(wav):
        calls.append(wav.shape[-1])
        frames = wav.reshape(wav.shape[0], 1, -1, HOP).sum(-1)
        following = torch.nn.functional.pad(frames[..., 1:], (0, 1))
        return (frames * 10 + following).round().long()
    return encode


def test_to_mono_shapes_and_refusals():
    stereo = torch.stack([torch.ones(6), -torch.ones(6) * 3]).unsqueeze(0)  # [1, 2, 6]
    assert torch.equal(to_mono(stereo), torch.full((1, 1, 6), -1.0))
    assert to_mono(torch.zeros(5)).shape == (1, 1, 5) and to_mono(torch.zeros(2, 5)).shape == (2, 1, 5)
    with pytest.raises(MediaError, match="audio has no samples"):
        to_mono(torch.zeros(1, 1, 0))
    with pytest.raises(MediaError, match="NaN or infinite"):
        to_mono(torch.tensor([0.0, float("nan")]))
    with pytest.raises(MediaError, match=r"audio batch must be \[B, C, S\]"):
        to_mono(torch.zeros(1, 1, 1, 4))


def test_chunked_encode_equals_one_call_and_keeps_each_call_in_its_window():
    wav = torch.randint(-3, 4, (2, 1, 101)).float()  # 101 samples: padded to 26 frames
    whole_calls, calls = [], []
    whole = neighbour_encoder(whole_calls)(torch.nn.functional.pad(wav, (0, 3)))
    chunked = chunked_encode(neighbour_encoder(calls), wav, HOP, window=8 * HOP, context=1 * HOP)
    assert chunked.shape == (2, 1, 26) and torch.equal(chunked, whole)
    assert len(calls) > 1 and max(calls) <= 8 * HOP
    no_context = chunked_encode(neighbour_encoder([]), wav, HOP, window=8 * HOP, context=0)
    assert not torch.equal(no_context, whole)  # the context is what makes them equal
    with pytest.raises(ValueError, match="twice the context"):
        chunked_encode(neighbour_encoder([]), wav, HOP, window=2 * HOP, context=HOP)


def test_chunked_decode_equals_one_call():
    def decode(codes):  # each frame's samples depend on the frame and the one before
        previous = torch.nn.functional.pad(codes[..., :-1], (1, 0)).float()
        return (codes.float() * 2 + previous).repeat_interleave(HOP, -1)

    codes = torch.randint(0, 50, (1, 1, 23))
    whole = decode(codes)
    got = chunked_decode(decode, codes, HOP, window_frames=6, context_frames=1)
    assert got.shape == (1, 1, 23 * HOP) and torch.equal(got, whole)
