"""The second stage shared by the speech tokenizers: a SoundStorm-style acoustic model fills RVQ
layers 2..K from layer 1 (what the LM writes) in the voice of a ~3 s prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anygpt.errors import CheckpointError
from anygpt.modalities.audio import AudioTokenizerBase


class TwoStageSpeechTokenizer(AudioTokenizerBase):
    """Subclasses set `acoustic` (a SoundStorm or None), `steps` (MaskGIT iterations per acoustic
    layer), `default_prompt` (codes LongTensor [K, P] or None: unprompted) and `codebook_sizes`
    (one per RVQ layer, layer 1 first)."""

    acoustic: torch.nn.Module | None = None
    default_prompt: torch.Tensor | None = None
    steps: tuple[int, ...] = (8, 1)
    codebook_sizes: tuple[int, ...]
    acoustic_hint = "an acoustic model"  # what to load, named in the error when it is missing

    def check_codes(self, codes: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """[B, K', T] or [K', T] with K' in `layers` (default 1..K) -> LongTensor [B, K', T];
        ValueError naming the layer whose codes are out of range."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        codes = codes.unsqueeze(0) if codes.dim() == 2 else codes
        k = len(self.codebook_sizes)
        layers = layers or tuple(range(1, k + 1))
        if codes.dim() != 3 or codes.shape[1] not in layers:
            raise ValueError(f"speech codes must be [B, K, T] with K in {layers}, got {tuple(codes.shape)}")
        for layer, size in enumerate(self.codebook_sizes[: codes.shape[1]]):
            c = codes[:, layer]
            if c.numel() and (c.min() < 0 or c.max() >= size):
                raise ValueError(f"speech codes of layer {layer + 1} must be in 0..{size - 1}")
        return codes

    def prompt_codes(self, voice_prompt: Any = None) -> torch.Tensor | None:
        """A voice prompt (audio file path, FloatTensor [C, S] at sample_rate, or codes LongTensor
        [K, P] of all layers; None: `default_prompt`) -> codes LongTensor [K, P] or None."""
        if voice_prompt is None:
            return self.default_prompt
        if isinstance(voice_prompt, (str, Path)):
            voice_prompt = self.load(voice_prompt)
        voice_prompt = torch.as_tensor(voice_prompt)
        if voice_prompt.is_floating_point():
            return self.encode(voice_prompt.unsqueeze(0))[0]
        k = len(self.codebook_sizes)
        return self.check_codes(voice_prompt, (k,))[0]

    def fill_acoustic(self, semantic: torch.Tensor, voice_prompt: Any = None, seed: int = 0) -> torch.Tensor:
        """Layer-1 codes LongTensor [B, T] -> all layers LongTensor [B, K, T], layers 2..K made by
        the acoustic model in the voice of `voice_prompt` (see `prompt_codes`)."""
        acoustic = self.acoustic
        if acoustic is None:
            raise CheckpointError(f"decoding layer-1 speech codes needs {self.acoustic_hint}")
        b, prompt = semantic.shape[0], self.prompt_codes(voice_prompt)
        kw = {}
        if prompt is not None:
            prompt = prompt.to(semantic.device)
            kw = dict(prompt_semantic=prompt[0].expand(b, -1), prompt_acoustic=prompt[1:].T.expand(b, -1, -1))
        gen = torch.Generator().manual_seed(seed)
        layers = acoustic.generate(semantic, steps=self.steps, generator=gen, **kw)  # [B, T, K - 1]
        return torch.cat([semantic[:, None], layers.transpose(1, 2)], dim=1)

    def decode_all_layers(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor [B, K, T] -> FloatTensor [B, 1, T * hop] (subclasses)."""
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """codes LongTensor [B, K', T] -> FloatTensor [B, 1, T * hop] in [-1, 1]. K' = 1 with an
        acoustic model: layers 2..K are made in the voice of context["voice_prompt"] (seed:
        context["seed"]); otherwise the K' layers given are decoded as they are."""
        codes = self.check_codes(codes)
        with torch.inference_mode():
            if codes.shape[1] == 1 and self.acoustic is not None:
                codes = self.fill_acoustic(codes[:, 0], context.get("voice_prompt"), context.get("seed", 0))
            return self.decode_all_layers(codes).clamp(-1.0, 1.0)
