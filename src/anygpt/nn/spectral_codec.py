"""What the compact music and speech codecs share: the STFT-frame trunk, its config, and the
multi-scale mel loss both are trained with.

    wav [B, 1, S] -> log-magnitude STFT [B, bins, S / hop] -> `downsample` frames stacked per code
    frame -> ConvNeXt encoder -> latent [B, latent_dim, S / frame_hop]      (SpectralCodecTrunk)
    latent -> ConvNeXt decoder trunk -> the subclass's `dec_out` -> STFT frames

anygpt.nn.compact_music_codec and anygpt.nn.speech_codec build their codecs on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anygpt.files import write_text
from anygpt.manifest import read_json


@dataclass
class SpectralCodecConfig:
    """Hyper-parameters shared by the compact music and speech codecs (SpectralCodecTrunk);
    serialised as JSON beside the weights."""

    sample_rate: int = 16000
    n_fft: int = 640
    hop: int = 160  # STFT hop: 100 frames/s at 16 kHz
    downsample: int = 4  # STFT frames stacked into one code frame: 4 -> 25 Hz codes, 2 -> 50 Hz
    enc_dim: int = 192
    enc_blocks: int = 3  # ConvNeXt blocks at the code rate
    dec_dim: int = 256
    dec_blocks: int = 6
    latent_dim: int = 64
    codebook_dim: int = 8  # lookup dimension of each codebook (projected from latent_dim)
    num_codebooks: int = 4
    codebook_size: int = 512
    commitment_weight: float = 0.25
    seed: int = 0
    # inference only: Griffin-Lim iterations on the decoded magnitudes (training always uses 0)
    decode_phase_iters: int = 0

    @property
    def frame_hop(self) -> int:
        """Samples per code frame."""
        return self.hop * self.downsample

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_hop

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_dict(read_json(path, what="codec config"))


class ConvNeXtBlock(nn.Module):
    """Depthwise conv k7 -> LayerNorm -> pointwise MLP (x3) -> layer scale, residual. [B, C, T]."""

    def __init__(self, dim: int, mult: int = 3, layer_scale: float = 0.1):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, dim * mult)
        self.pw2 = nn.Linear(dim * mult, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


def _stack(dim: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(n)])


class SpectralCodecTrunk(nn.Module):
    """What the compact music and speech codecs share: STFT frames stacked `downsample` per code
    frame, a ConvNeXt encoder to a latent at the code rate, and a ConvNeXt decoder trunk.
    Subclasses add the quantizers and `dec_out`."""

    def __init__(self, cfg: SpectralCodecConfig):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.bins = cfg.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        d = cfg.enc_dim
        # encoder: k stacked STFT frames -> one code frame
        self.enc_in = nn.Linear(self.bins * cfg.downsample, d)
        self.enc_blocks = _stack(d, cfg.enc_blocks)
        self.enc_norm = nn.LayerNorm(d)
        self.enc_out = nn.Linear(d, cfg.latent_dim)

    def _build_decoder_trunk(self) -> None:
        # after the quantizers, so that parameter creation order (and seeded init) is unchanged
        e = self.cfg.dec_dim
        self.dec_in = nn.Conv1d(self.cfg.latent_dim, e, 3, padding=1)
        self.dec_blocks = _stack(e, self.cfg.dec_blocks)
        self.dec_norm = nn.LayerNorm(e)

    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected mono wav [B, 1, S], got {tuple(wav.shape)}")
        if wav.shape[-1] % self.cfg.frame_hop or wav.shape[-1] == 0:
            raise ValueError(f"wav length {wav.shape[-1]} is not a positive multiple of the frame hop {self.cfg.frame_hop}")
        return wav

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> log magnitude [B, bins, S / hop] (the last centred frame dropped)."""
        spec = torch.stft(wav[:, 0].float(), self.cfg.n_fft, self.cfg.hop, window=self.window,
                          center=True, return_complex=True)
        return torch.log(spec.abs() + 1e-5)[..., : wav.shape[-1] // self.cfg.hop]

    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> continuous latent [B, latent_dim, S / frame_hop]."""
        spec = self.spectrogram(self._check_wav(wav))  # [B, bins, T*k]
        b, f, n = spec.shape
        k = self.cfg.downsample
        x = spec.reshape(b, f, n // k, k).permute(0, 2, 3, 1).reshape(b, n // k, k * f)
        x = self.enc_blocks(self.enc_in(x).transpose(1, 2))
        return self.enc_out(self.enc_norm(x.transpose(1, 2))).transpose(1, 2)

    def decoder_frames(self, z: torch.Tensor) -> torch.Tensor:
        """latent [B, latent_dim, T] -> dec_out features reshaped to [B, F, T * downsample]."""
        b, _, t = z.shape
        x = self.dec_blocks(self.dec_in(z))
        x = self.dec_out(self.dec_norm(x.transpose(1, 2))).float()  # [B, T, k * F]
        return x.reshape(b, t * self.cfg.downsample, -1).transpose(1, 2)


# ---------------------------------------------------------------------- losses
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """Triangular HTK-mel filters FloatTensor [n_mels, n_fft // 2 + 1] (Slaney-style area norm)."""
    fmax = fmax or sample_rate / 2

    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, ce, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lo) / (ce - lo).clamp(min=1e-5)
    down = (hi - freqs[None]) / (hi - ce).clamp(min=1e-5)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    return fb * (2.0 / (hi - lo).clamp(min=1e-5))


class MultiScaleMelLoss(nn.Module):
    """Sum over STFT scales of L1(log mel) + spectral convergence; inputs [B, 1, S]."""

    def __init__(self, sample_rate: int, scales: tuple[int, ...] = (256, 512, 1024, 2048),
                 n_mels: tuple[int, ...] = (32, 64, 80, 128)):
        super().__init__()
        self.scales = scales
        for n, m in zip(scales, n_mels):
            self.register_buffer(f"fb{n}", mel_filterbank(sample_rate, n, m), persistent=False)
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mel L1 averaged over scales, spectral convergence averaged over scales)."""
        mel_l1, sc = 0.0, 0.0
        e, r = est[:, 0].float(), ref[:, 0].float()
        for n in self.scales:
            win, fb = getattr(self, f"win{n}"), getattr(self, f"fb{n}")
            se = torch.stft(e, n, n // 4, window=win, return_complex=True).abs()
            sr = torch.stft(r, n, n // 4, window=win, return_complex=True).abs()
            me, mr = fb @ se, fb @ sr
            mel_l1 = mel_l1 + (torch.log(me + 1e-5) - torch.log(mr + 1e-5)).abs().mean()
            sc = sc + torch.linalg.norm(sr - se) / (torch.linalg.norm(sr) + 1e-5)
        k = len(self.scales)
        return mel_l1 / k, sc / k
