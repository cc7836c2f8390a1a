"""The compact music codec: a frame-domain RVQ autoencoder small enough to train on 2 CPU cores.

Why not a small Encodec (SEANet) config: SEANet encoders and decoders run convolutions at the
audio sample rate, so even with 16 filters they cost several GFLOP per second of audio and
need long (adversarial) training to sound right. This codec works on STFT frames instead,
like Vocos (arXiv 2306.00814) on the decoder side:

    wav [B, 1, S] (16 kHz)
      -> log-magnitude STFT (n_fft 640, hop 160: 100 frames/s)       [B, 321, S/160]
      -> 2 frames stacked per code frame, linear, ConvNeXt at 50 Hz   latent [B, D, S/320]
      -> ResidualVectorQuantizer: 4 codebooks of 1024                 codes [B, 4, S/320]
      -> ConvNeXt decoder at 50 Hz -> linear to 2 frames of log-magnitude and phase of
         321 bins each ("pixel shuffle" in time) -> inverse STFT -> wav [B, 1, S]

Every layer runs at the code rate (`downsample` STFT frames per code frame), so encode and
decode cost well under a GFLOP per second of audio and training sees enough audio on 2 shared
cores (a first version with ConvNeXt stacks at 100 Hz cost 4x more per step for no measured
gain in a smoke run). Losses (`codec_losses`): multi-scale log-mel L1 (+ spectral
convergence), waveform L1, RVQ commitment; no adversarial loss.

Choice of rate and codebooks: 16 kHz audio (the corpus is General-MIDI renderings whose energy
is below 8 kHz; basic-pitch itself resamples to 22.05 kHz), 50 code frames per second and 4
codebooks of 1024: 2 kbps and 200 LM tokens per second of music, the release's token rate (its
Encodec 32 kHz writes 4 x 2048 codes at 50 Hz), with half its music vocabulary (4096 entries).
An 8 s clip is 1600 tokens, so training sequences take music as random 2-5 s excerpts in
pretraining and in conversations (anygpt.data.pretraining.excerpt), as the release trains on
5 s excerpts. Measured with benchmarks/eval_music_codec.py on 45 clips of the tiny corpus's
held-out pieces (note F1 of basic-pitch transcriptions, source vs reconstruction):
- shipped, 50 Hz x 4 x 1024: F1 0.697 after 25000 steps (224 min, 1 thread on 2 shared cores;
  four resumed runs, commands in the asset's config.json); along the way 0.648 / 0.660 / 0.671
  / 0.682 after 6198 / 8900 / 11927 / 16463 steps, and 0.695 after 3000 more (28000, not
  shipped): it has levelled off. Folk tunes 0.785, Bach chorales 0.456; log-mel distance 0.296
  (mu-law at the same 2 kbps: F1 0.05, log-mel 2.48; 8-bit mu-law at 128 kbps: F1 0.92,
  log-mel 0.19).
- 25 Hz x 4 x 512 (`--downsample 4 --codebook-size 512`, 0.9 kbps, 100 tokens per second; the
  weights shipped before, 3600 steps / 40 min): F1 0.620 (folk 0.72, chorales 0.34), log-mel
  distance 0.441: half the tokens per second, and chorales drop further.
The target (F1 0.7) is missed on the chorales (four voices close together: 0.456), while the
monophonic tunes are at 0.785.
Encode 298x, decode 162x real time on 1 thread (benchmarks/bench_music_codec.py).
Waveforms are not sample-aligned (SI-SNR < 0 dB): without an adversarial loss the decoder's
phase is its own; the spectrum, which pitch lives in, is kept.

The tokenizer (anygpt.modalities.music_tokenizers.CompactMusicTokenizer) wraps this module;
this file knows nothing of the LM. The trunk it shares with the speech codec is in
anygpt.nn.spectral_codec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from anygpt.nn.quantize import ResidualVectorQuantizer, VQOutput
from anygpt.nn.spectral_codec import MultiScaleMelLoss, SpectralCodecConfig, SpectralCodecTrunk


@dataclass
class MusicCodecConfig(SpectralCodecConfig):
    """CompactMusicCodec: 4 codebooks, the decoder predicts magnitude and phase; Griffin-Lim
    refinement of that phase at inference (decode_phase_iters) is off by default: with 16
    iterations the shipped 50 Hz codec reads note F1 0.711 instead of 0.697 on the held-out
    pieces but 0.624 instead of 0.617 on the val clips (64 iterations: 0.617), and its log-mel
    distance grows from 0.30 to 0.48 on both; the 25 Hz codec lost F1 with it."""

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes."""
        return self.frame_rate * self.num_codebooks * math.log2(self.codebook_size)


class CompactMusicCodec(SpectralCodecTrunk):
    """wav FloatTensor [B, 1, S] at cfg.sample_rate <-> codes LongTensor [B, K, S / frame_hop]."""

    def __init__(self, cfg: MusicCodecConfig):
        super().__init__(cfg)
        self.quantizer = ResidualVectorQuantizer(
            cfg.num_codebooks, cfg.codebook_size, cfg.latent_dim,
            commitment_weight=cfg.commitment_weight, seed=cfg.seed,
            # DAC-style (arXiv 2306.06546): 8-d factorised, L2-normalised lookup, codebook learned by
            # gradient; a first try with EMA L2 codebooks in 64-d collapsed to one code in smoke runs
            codebook_dim=cfg.codebook_dim, distance="cosine", ema=False, kmeans_init=True,
            # usage tracked with a short memory: a code unused for ~20 steps is restarted on a
            # random latent of the batch (without it the first codebook collapsed to one code)
            decay=0.9, dead_code_threshold=0.1,
        )
        # decoder: one code frame -> k STFT frames of log-magnitude and phase
        self._build_decoder_trunk()
        self.dec_out = nn.Linear(cfg.dec_dim, self.bins * 2 * cfg.downsample)

    def decode_latent(self, z: torch.Tensor, phase_iters: int | None = None) -> torch.Tensor:
        """latent [B, latent_dim, T] -> wav [B, 1, T * frame_hop]. phase_iters: Griffin-Lim
        iterations starting from the predicted phase (default: cfg.decode_phase_iters when not
        training, else 0)."""
        t = z.shape[-1]
        logmag, phase = self.decoder_frames(z).chunk(2, dim=1)  # [B, bins, T*k] each
        mag = torch.exp(logmag.clamp(max=6.0))
        spec = torch.polar(mag, phase)  # mag * (cos + i sin)
        # torch.istft with center=True needs one more frame than S / hop: pad with a copy
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)
        n = t * self.cfg.frame_hop
        if phase_iters is None:
            phase_iters = 0 if self.training else self.cfg.decode_phase_iters
        istft = lambda s: torch.istft(s, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, length=n)
        wav = istft(spec)
        if phase_iters:
            mag = torch.cat([mag, mag[..., -1:]], dim=-1)
            for _ in range(phase_iters):
                rebuilt = torch.stft(wav, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True,
                                     return_complex=True)
                wav = istft(mag * torch.exp(1j * rebuilt.angle()))
        return wav.unsqueeze(1)

    # ------------------------------------------------------------------ API
    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, VQOutput]:
        """wav [B, 1, S] -> (reconstruction [B, 1, S], VQOutput with codes [B, K, S / frame_hop])."""
        z = self.encode_latent(wav)
        q = self.quantizer(z)
        return self.decode_latent(q.quantized), q

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] (S a multiple of frame_hop) -> codes LongTensor [B, K, S / frame_hop]."""
        return self.quantizer.encode(self.encode_latent(wav))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, phase_iters: int | None = None) -> torch.Tensor:
        """codes LongTensor [B, K, T] -> wav [B, 1, T * frame_hop]."""
        return self.decode_latent(self.quantizer.decode(codes), phase_iters)


@dataclass
class LossWeights:
    mel: float = 1.0
    spectral_convergence: float = 1.0
    waveform: float = 1.0
    commitment: float = 1.0  # multiplies the RVQ loss (commitment_weight * commit + codebook loss)


def codec_losses(est: torch.Tensor, ref: torch.Tensor, vq: VQOutput, mel_loss: MultiScaleMelLoss,
                 w: LossWeights | None = None) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted 'total' for one batch. est/ref: [B, 1, S]."""
    w = w or LossWeights()
    mel, sc = mel_loss(est, ref)
    wave = (est.float() - ref.float()).abs().mean()
    total = w.mel * mel + w.spectral_convergence * sc + w.waveform * wave + w.commitment * vq.loss
    return {"total": total, "mel": mel.detach(), "sc": sc.detach(), "wave": wave.detach(),
            "commit": vq.commit_loss.detach()}
