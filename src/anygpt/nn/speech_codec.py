"""Our compact speech tokenizer: an STFT-frame RVQ autoencoder whose first codebook carries
content (distilled from Whisper tiny.en's encoder), small enough to train on 2 CPU cores.

SpeechTokenizer (arXiv 2308.16692) distils HuBERT into RVQ layer 1 so that layer 1 holds
content and layers 2..K hold voice and detail. Here there is no HuBERT; layer 1 is distilled
from the shipped Whisper tiny.en encoder (computed offline, anygpt.nn.speech_data), and a
speaker classifier behind a gradient-reversal layer (DANN, arXiv 1409.7495) reads layer 1's
quantized vectors during training so that the encoder keeps voice out of layer 1's lookup
space (the residual layers still receive it).

    wav [B, 1, S] (16 kHz)
      -> log-magnitude STFT (n_fft 640, hop 160: 100 frames/s)          [B, 321, S/160]
      -> `downsample` frames stacked per code frame, linear, ConvNeXt     latent e [B, D, T]
      -> layer 1: VectorQuantizer (content; distilled, speaker-adversarial)   codes[:, 0]
      -> layers 2..K: ResidualVectorQuantizer on e - q1                        codes[:, 1:]
      -> ConvNeXt decoder -> log-magnitude + phase of `downsample` STFT frames -> iSTFT

With `layer1: "units"` (issue 23), layer 1 is not learned by the codec: it is the voice-free
content units of anygpt.nn.content_units (Whisper tiny.en frames pooled to the code rate,
utterance-normalised, projected, nearest of K centroids), which the codec carries inside its
weights and computes when it encodes; the codec learns one vector per unit (`unit_embed`) and
the acoustic layers code e - unit_embed[unit], so voice and detail live in layers 2..K only.

As in the music codec (anygpt.nn.compact_music_codec; the trunk both share is
anygpt.nn.spectral_codec), every layer runs at the code rate, so encode and decode cost a
fraction of a GFLOP per second of audio; codes [B, K, T] with T = S / frame_hop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anygpt.nn.spectral_codec import SpectralCodecConfig, SpectralCodecTrunk
from anygpt.nn.quantize import ResidualVectorQuantizer, VectorQuantizer, VQOutput, code_perplexity


@dataclass
class SpeechCodecConfig(SpectralCodecConfig):
    """Hyper-parameters of CompactSpeechCodec (serialised as JSON beside the weights)."""

    enc_blocks: int = 4
    num_codebooks: int = 6  # layer 1 (content) + num_codebooks - 1 acoustic layers
    codebook_size: int = 512  # acoustic layers
    decode_phase_iters: int = 64
    semantic_codebook_size: int = 512  # layer 1 (the LM's codes)
    semantic_dim: int = 384  # width of the distillation target (Whisper tiny encoder)
    # "griffin_lim": the decoder predicts log-magnitudes only and inference recovers the phase by
    # Griffin-Lim (`decode_phase_iters` iterations); trains several times faster on CPU than
    # "predicted" (log-magnitude + phase through an iSTFT, trained on waveform losses), whose
    # output was unintelligible after 45 min here (Whisper WER ~1.0 vs 0.32 on the source).
    phase: str = "griffin_lim"
    # "vq": layer 1 is a VQ of the codec's latent, distilled from Whisper (speech-tokenizer-tiny);
    # "units": layer 1 is the content units (semantic_codebook_size of them), computed from Whisper
    layer1: str = "vq"
    units_hidden: int = 256
    units_dim: int = 64
    # how the units are fitted (anygpt.nn.content_units): "voices" (across voices, k-means) or
    # "phones" (CTC on the text's phonemes; semantic_codebook_size is then len(PHONES)), and the
    # Whisper frames either side each frame is read with
    units_objective: str = "voices"
    units_context: int = 0

    def content_units_config(self):
        """The ContentUnitsConfig of a "units" layer 1."""
        from anygpt.nn.content_units import ContentUnitsConfig

        return ContentUnitsConfig(hidden=self.units_hidden, dim=self.units_dim, units=self.semantic_codebook_size,
                                  seed=self.seed, objective=self.units_objective, context=self.units_context)


def _vq_kwargs(cfg: SpeechCodecConfig) -> dict:
    # the music codec's measured choice: 8-d factorised cosine lookup learned by gradient,
    # k-means init, fast dead-code restarts (EMA L2 codebooks collapsed in its smoke runs)
    return dict(codebook_dim=cfg.codebook_dim, distance="cosine", ema=False, kmeans_init=True,
                decay=0.9, dead_code_threshold=0.1, commitment_weight=cfg.commitment_weight)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.scale * g, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient multiplied by -scale backward (DANN)."""
    return _GradReverse.apply(x, scale)


@dataclass
class CodecOutput:
    """What CompactSpeechCodec.forward returns (training)."""

    logmag: torch.Tensor  # [B, bins, S / hop]: predicted log magnitude from all layers
    wav: torch.Tensor | None  # [B, 1, S] reconstruction (phase "predicted" only)
    codes: torch.Tensor  # [B, K, T]
    vq_loss: torch.Tensor  # scalar, summed over layers
    commit_loss: torch.Tensor
    semantic: torch.Tensor  # [B, T, semantic_dim]: layer-1 prediction of the distillation target
    q1: torch.Tensor  # [B, latent_dim, T]: layer-1 quantized vectors (straight-through)
    perplexities: torch.Tensor  # [K]


class CompactSpeechCodec(SpectralCodecTrunk):
    """wav FloatTensor [B, 1, S] at 16 kHz <-> codes LongTensor [B, K, S / frame_hop]."""

    def __init__(self, cfg: SpeechCodecConfig):
        super().__init__(cfg)
        if cfg.layer1 not in ("vq", "units"):
            raise ValueError(f"layer1 must be 'vq' or 'units', got {cfg.layer1!r}")
        if cfg.layer1 == "units":
            from anygpt.nn.content_units import ContentUnits

            self.units = ContentUnits(cfg.content_units_config())
            self.units.requires_grad_(False)  # a fixed teacher, fitted before the codec trains
            self.unit_embed = nn.Embedding(cfg.semantic_codebook_size, cfg.latent_dim)
            self._whisper = None  # loaded on the first encode
        else:
            self.semantic_vq = VectorQuantizer(cfg.semantic_codebook_size, cfg.latent_dim, seed=cfg.seed,
                                               **_vq_kwargs(cfg))
        self.acoustic_rvq = ResidualVectorQuantizer(cfg.num_codebooks - 1, cfg.codebook_size, cfg.latent_dim,
                                                    seed=cfg.seed + 100, **_vq_kwargs(cfg))
        self.semantic_head = nn.Linear(cfg.latent_dim, cfg.semantic_dim)
        self._build_decoder_trunk()
        if cfg.phase not in ("griffin_lim", "predicted"):
            raise ValueError(f"phase must be 'griffin_lim' or 'predicted', got {cfg.phase!r}")
        self.dec_out = nn.Linear(cfg.dec_dim, self.bins * (1 if cfg.phase == "griffin_lim" else 2) * cfg.downsample)

    # ------------------------------------------------------------------ pieces
    def decode_spectrum(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """latent [B, latent_dim, T] -> (log magnitude [B, bins, T * downsample], phase of the same
        shape, or None when the phase is left to Griffin-Lim)."""
        x = self.decoder_frames(z)
        if self.cfg.phase == "griffin_lim":
            return x, None
        logmag, phase = x.chunk(2, dim=1)
        return logmag, phase

    def _istft(self, spec: torch.Tensor, n: int) -> torch.Tensor:
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)  # center=True wants one frame more
        return torch.istft(spec, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, length=n)

    def decode_latent(self, z: torch.Tensor, phase_iters: int | None = None) -> torch.Tensor:
        """latent [B, latent_dim, T] -> wav [B, 1, T * frame_hop]."""
        return self.waveform(*self.decode_spectrum(z), phase_iters=phase_iters)

    def waveform(self, logmag: torch.Tensor, phase: torch.Tensor | None = None,
                 phase_iters: int | None = None) -> torch.Tensor:
        """log magnitude [B, bins, N] (and its phase, or None) -> wav [B, 1, N * hop]. Without a
        phase, fast Griffin-Lim (`phase_iters`, default cfg.decode_phase_iters) finds one."""
        mag = torch.exp(logmag.clamp(max=6.0))
        n = logmag.shape[-1] * self.cfg.hop
        if phase_iters is None:
            phase_iters = self.cfg.decode_phase_iters
        if phase is None:  # Griffin-Lim from a fixed pseudo-random start, so decoding is deterministic
            g = torch.Generator().manual_seed(0)
            phase = torch.rand(mag.shape, generator=g) * (2 * math.pi)
        spec = torch.polar(mag, phase)
        previous = torch.zeros_like(spec)
        for _ in range(phase_iters):  # fast Griffin-Lim (Perraudin et al. 2013), momentum 0.99
            rebuilt = torch.stft(self._istft(spec, n), self.cfg.n_fft, self.cfg.hop, window=self.window,
                                 center=True, return_complex=True)[..., : mag.shape[-1]]
            accelerated = rebuilt - previous * (0.99 / 1.99)
            spec = mag * accelerated / (accelerated.abs() + 1e-16)
            previous = rebuilt
        return self._istft(spec, n).unsqueeze(1)

    # ------------------------------------------------------------------ layer 1
    def layer1_vectors(self, c1: torch.Tensor) -> torch.Tensor:
        """layer-1 codes LongTensor [B, T] -> their vectors [B, latent_dim, T]."""
        if self.cfg.layer1 == "units":
            return self.unit_embed(c1).transpose(1, 2)
        return self.semantic_vq.decode(c1)

    def content_units(self, wav: torch.Tensor) -> torch.Tensor:
        """layer "units": wav [B, 1, S] -> units LongTensor [B, S / frame_hop], each clip read
        by Whisper tiny.en on its own (CTranslate2, int8; loaded on first use)."""
        from anygpt.nn.speech_data import WHISPER_HOP, WhisperEncoder, pool_frames

        if self._whisper is None:
            self._whisper = WhisperEncoder(threads=max(1, torch.get_num_threads()))
        t = wav.shape[-1] // self.cfg.frame_hop
        rows = [self.units.units(pool_frames(self._whisper(w[0].float().numpy()), self.cfg.frame_hop // WHISPER_HOP, t))
                for w in wav.cpu()]
        return torch.stack(rows).to(wav.device)

    # ------------------------------------------------------------------ training
    def forward(self, wav: torch.Tensor, units: torch.Tensor | None = None) -> CodecOutput:
        """wav [B, 1, S]; units LongTensor [B, S / frame_hop]: layer 1 of a "units" codec (the
        trainer computes them once per clip)."""
        e = self.encode_latent(wav)
        if self.cfg.layer1 == "units":
            if units is None:
                raise ValueError("a codec with layer1 'units' trains on given units [B, T]")
            ppl = code_perplexity(units, self.cfg.semantic_codebook_size)
            zero = e.new_zeros(())
            o1 = VQOutput(self.layer1_vectors(units).to(e.dtype), units, zero, zero, zero, ppl, ppl.reshape(1))
        else:
            o1 = self.semantic_vq(e)
        rest: VQOutput = self.acoustic_rvq(e - o1.quantized.detach())
        q = o1.quantized + rest.quantized
        semantic = self.semantic_head(o1.quantized.transpose(1, 2))
        codes = torch.cat([o1.codes[:, None], rest.codes], dim=1)
        logmag, phase = self.decode_spectrum(q)
        wav = self.waveform(logmag, phase, phase_iters=0) if phase is not None else None
        return CodecOutput(logmag, wav, codes, o1.loss + rest.loss, o1.commit_loss + rest.commit_loss,
                           semantic, o1.quantized, torch.cat([o1.perplexities, rest.perplexities]))

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """wav [B, 1, S] (S a multiple of frame_hop) -> codes LongTensor [B, n_q or K, S / frame_hop].
        Layer 1 alone of a "units" codec needs only the content teacher, not the codec's encoder."""
        n_q = self.cfg.num_codebooks if n_q is None else n_q
        if self.cfg.layer1 == "units" and n_q == 1:
            return self.content_units(wav)[:, None]
        e = self.encode_latent(wav).float()
        c1 = self.content_units(wav) if self.cfg.layer1 == "units" else self.semantic_vq.encode(e)
        if n_q == 1:
            return c1[:, None]
        rest = self.acoustic_rvq.encode(e - self.layer1_vectors(c1).float(), n_q - 1)
        return torch.cat([c1[:, None], rest], dim=1)

    @torch.no_grad()
    def quantized(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K', T] (the first K' layers) -> summed code vectors [B, latent_dim, T]."""
        q = self.layer1_vectors(codes[:, 0]).float()
        if codes.shape[1] > 1:
            q = q + self.acoustic_rvq.decode(codes[:, 1:])
        return q

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, phase_iters: int | None = None) -> torch.Tensor:
        """codes LongTensor [B, K', T] -> wav [B, 1, T * frame_hop] (K' < K: missing layers are 0)."""
        return self.decode_latent(self.quantized(codes), phase_iters)


def save_codec(codec: CompactSpeechCodec, folder: str | Path, extra: dict | None = None) -> Path:
    """Write config.json + model.safetensors (inference weights, float16) into folder."""
    from anygpt.nn.weights import inference_state, save_weights

    return save_weights(folder, inference_state(codec), {"codec": codec.cfg.to_dict(), **(extra or {})})


def load_codec(folder: str | Path) -> CompactSpeechCodec:
    """A folder written by save_codec -> CompactSpeechCodec in eval mode."""
    from anygpt.nn.weights import TRAINING_ONLY, load_inference_state, read_meta

    meta = read_meta(folder)
    codec = CompactSpeechCodec(SpeechCodecConfig.from_dict(meta.get("codec", meta)))
    load_inference_state(codec, folder, TRAINING_ONLY + ("initted",))
    for m in codec.modules():  # k-means init is a training-time step; loaded codebooks are ready
        if isinstance(m, VectorQuantizer):
            m.initted.fill_(True)
    return codec.eval()
