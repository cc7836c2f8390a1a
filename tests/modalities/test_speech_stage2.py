"""anygpt.modalities.speech_stage2: what the two speech tokenizers share; layer-1 codes are
completed by the acoustic model in the voice of a prompt (given as codes, audio or a file, or
the default one), code ranges are checked per layer."""

from __future__ import annotations

import pytest
import torch

from anygpt.errors import CheckpointError
from anygpt.modalities.speech_stage2 import TwoStageSpeechTokenizer
from anygpt.token_spec import TokenSpec

HOP = 2


class EchoAcoustic(torch.nn.Module):
    """Fills the acoustic layers with the prompt's first acoustic frame (0 without a prompt)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, semantic, steps, generator, prompt_semantic=None, prompt_acoustic=None):
        self.calls.append((steps, None if prompt_semantic is None else prompt_semantic.tolist()))
        b, t = semantic.shape
        if prompt_acoustic is None:
            return torch.zeros(b, t, 2, dtype=torch.long)
        return prompt_acoustic[:, :1, :].expand(b, t, 2)


class Toy(TwoStageSpeechTokenizer):
    name = "speech"
    sample_rate = 8
    frame_rate = 4.0
    num_codebooks = 3
    codebook_size = 5
    codebook_sizes = (5, 3, 3)
    steps = (4, 1)

    def __init__(self, acoustic=None, default_prompt=None):
        self.acoustic, self.default_prompt = acoustic, default_prompt

    @property
    def token_spec(self):
        return TokenSpec("speech", "s", "<sosp>", "<eosp>", 5)

    def encode(self, media):  # every frame: layer 1 -> 1, acoustic layers -> 2
        t = media.shape[-1] // HOP
        return torch.tensor([1, 2, 2]).reshape(1, 3, 1).expand(media.shape[0], 3, t).clone()

    def decode_all_layers(self, codes):  # sample value = the frame's code sum / 10
        return (codes.sum(1, keepdim=True).float() / 10).repeat_interleave(HOP, -1)


def test_layer_one_is_completed_in_the_voice_of_the_prompt():
    acoustic = EchoAcoustic()
    tok = Toy(acoustic, default_prompt=torch.tensor([[0, 0], [1, 1], [1, 1]]))
    semantic = torch.tensor([[4, 3, 0]])
    default = tok.decode(semantic.unsqueeze(1))
    assert torch.allclose(default, torch.tensor([[[0.6, 0.6, 0.5, 0.5, 0.2, 0.2]]]))  # 4+1+1, 3+1+1, 0+1+1
    as_codes = tok.decode(semantic.unsqueeze(1), voice_prompt=torch.tensor([[1], [2], [0]]))
    assert torch.allclose(as_codes[0, 0, ::HOP], torch.tensor([0.6, 0.5, 0.2]))  # 4+2+0 ...
    as_audio = tok.fill_acoustic(semantic, voice_prompt=torch.zeros(1, 4 * HOP))  # encoded: layers 2, 3 -> 2
    assert as_audio.tolist() == [[[4, 3, 0], [2, 2, 2], [2, 2, 2]]]
    assert acoustic.calls[0] == ((4, 1), [[0, 0]]) and len(acoustic.calls) == 3


def test_all_layers_decode_as_they_are_and_unprompted_needs_no_prompt():
    acoustic = EchoAcoustic()
    tok = Toy(acoustic)
    full = torch.tensor([[[4], [2], [2]]])
    assert torch.allclose(tok.decode(full), torch.full((1, 1, HOP), 0.8)) and acoustic.calls == []
    assert tok.fill_acoustic(torch.tensor([[1, 2]])).tolist() == [[[1, 2], [0, 0], [0, 0]]]
    with pytest.raises(CheckpointError, match="decoding layer-1 speech codes needs an acoustic model"):
        Toy(None).fill_acoustic(torch.tensor([[1, 2]]))
    assert Toy(None).decode(torch.tensor([[1, 2]])).shape == (1, 1, 2 * HOP)  # no acoustic model: layer 1 alone


def test_codes_are_checked_layer_by_layer():
    tok = Toy(EchoAcoustic())
    with pytest.raises(ValueError, match="speech codes of layer 2 must be in 0..2"):
        tok.decode(torch.tensor([[[1], [3], [0]]]))
    with pytest.raises(ValueError, match="speech codes of layer 1 must be in 0..4"):
        tok.decode(torch.tensor([[5, 0]]))
    with pytest.raises(ValueError, match=r"K in \(1, 2, 3\), got \(1, 4, 2\)"):
        tok.decode(torch.zeros(1, 4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"K in \(3,\)"):  # a prompt given as codes holds every layer
        tok.prompt_codes(torch.tensor([[1, 1]]))
