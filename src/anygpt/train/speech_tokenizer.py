"""`anygpt train speech-tokenizer`: train the compact speech tokenizer (anygpt.nn.speech_codec).

    anygpt train speech-tokenizer --data data/tiny --out runs/speech-tokenizer --max-minutes 45 \\
        --export src/anygpt/assets/speech-tokenizer-tiny

Reads DATA/speech/manifest.jsonl (split "train"), computes once the layer-1 distillation
targets (Whisper tiny.en encoder outputs at 50 Hz, cached in OUT/whisper50.npz, resumable),
then trains on random crops with: L1 of log magnitudes + L1 of 80-band log-mel energies (the
default Griffin-Lim codec; a codec with phase "predicted" uses multi-scale log-mel L1 +
spectral convergence + waveform L1 instead), RVQ commitment/codebook losses, the layer-1 distillation loss
(1 - cosine between a linear map of layer 1's vectors and the Whisper features, as
SpeechTokenizer's "D-axis" loss) and a speaker classifier on layer 1 behind a gradient-reversal
layer. AdamW, warmup then cosine; bf16 autocast on CPU; torch threads = --threads.
OUT/last.pt is saved atomically every --save-every steps and on exit; running again with the
same OUT resumes (batches depend only on seed and step, so a resumed run draws the same ones).
`--export DIR` writes DIR/config.json + DIR/model.safetensors; `--export-only` exports
OUT/last.pt. `--synthetic` trains on generated "speech" (smoke tests, no corpus needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anygpt.nn.music_codec import MultiScaleMelLoss, mel_filterbank
from anygpt.nn.speech_codec import CompactSpeechCodec, SpeechCodecConfig, grad_reverse, save_codec
from anygpt.train.common import TrainingRun, load_checkpoint


def synthetic_speech(n: int, seconds: float, n_speakers: int = 4, sample_rate: int = 16000,
                     seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """n clips of vowel-like buzz (speaker = f0 and formant scale; content = formant sequence)."""
    rng = np.random.default_rng(seed)
    s = int(seconds * sample_rate)
    wavs, spk = [], []
    for i in range(n):
        k = i % n_speakers
        f0 = 90 + 50 * k
        seg = np.repeat(rng.integers(0, 5, size=int(seconds * 8) + 1), sample_rate // 8)[:s]
        formants = np.array([300, 500, 700, 400, 600])[seg] * (1 + 0.1 * k)
        phase = np.cumsum(2 * np.pi * f0 / sample_rate * np.ones(s))
        x = sum(np.sin(h * phase) * np.exp(-((h * f0 - formants) / 300.0) ** 2) for h in range(1, 30))
        wavs.append((0.3 * x / (np.abs(x).max() + 1e-6)).astype(np.float32))
        spk.append(k)
    return wavs, spk


def spectrum_losses(logmag: torch.Tensor, target: torch.Tensor, mel_fb: torch.Tensor,
                    floor: float = -7.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted vs true log magnitude [B, bins, N] -> (L1 of log magnitudes floored at `floor`,
    so that inaudible bins do not dominate; L1 of 80-band log-mel energies)."""
    logmag, target = logmag.float(), target.float()
    mag = (logmag.clamp(min=floor) - target.clamp(min=floor)).abs().mean()
    mel_est = torch.log(mel_fb @ torch.exp(logmag.clamp(max=6.0)) + 1e-5)
    mel_ref = torch.log(mel_fb @ torch.exp(target) + 1e-5)
    return mag, (mel_est - mel_ref).abs().mean()


def distill_loss(semantic: torch.Tensor, targets: list[np.ndarray], idx: list[int], starts: list[int],
                 frames: int) -> torch.Tensor:
    """1 - cosine between layer 1's prediction semantic [B, frames, D] and the content targets of
    the crops (clip idx[b] from code frame starts[b]), averaged over the frames the clips have."""
    b, _, d = semantic.shape
    tgt, valid = torch.zeros(b, frames, d), torch.zeros(b, frames)
    for row, (i, st) in enumerate(zip(idx, starts)):
        seg = torch.from_numpy(targets[i][st: st + frames].astype(np.float32))
        tgt[row, : len(seg)] = seg
        valid[row, : len(seg)] = 1
    cos = F.cosine_similarity(semantic.float(), tgt, dim=-1)
    return ((1 - cos) * valid).sum() / valid.sum().clamp(min=1)


def draw_crops(wavs: list[np.ndarray], batch: int, frames: int, hop: int, seed: int, step: int,
               weights: np.ndarray | None = None) -> tuple[torch.Tensor, list[int], list[int]]:
    """Random crops [batch, 1, frames*hop] aligned to code frames; returns (wav, clip idx, start frame).
    Clips shorter than the crop are zero-padded. Random gain of -10..0 dB."""
    rng = np.random.default_rng(seed * 1_000_003 + step)
    n = frames * hop
    out = np.zeros((batch, 1, n), np.float32)
    idx = rng.choice(len(wavs), size=batch, p=weights).tolist()
    starts = []
    for b, i in enumerate(idx):
        w = wavs[i]
        nf = -(-len(w) // hop)
        st = int(rng.integers(0, max(1, nf - frames + 1)))
        seg = w[st * hop: st * hop + n]
        out[b, 0, : len(seg)] = seg * 10 ** (-rng.uniform(0, 10) / 20)
        starts.append(st)
    return torch.from_numpy(out), idx, starts


# ---------------------------------------------------------------- training
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anygpt train speech-tokenizer", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/tiny"))
    p.add_argument("--out", type=Path, default=Path("runs/speech-tokenizer"))
    p.add_argument("--steps", type=int, default=4200)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop-frames", type=int, default=50, help="code frames per crop")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a loaded machine)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--distill-weight", type=float, default=2.0)
    p.add_argument("--adversary-weight", type=float, default=0.1, help="gradient-reversal scale (0: off)")
    p.add_argument("--config", type=str, default="{}", help="JSON overrides of SpeechCodecConfig")
    p.add_argument("--export", type=Path, default=None)
    p.add_argument("--export-only", action="store_true")
    p.add_argument("--synthetic", action="store_true", help="generated data (smoke test)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _load_data(args, cfg: SpeechCodecConfig):
    """-> (wavs, speaker ids, targets [T, 384] per clip or None)."""
    if args.synthetic:
        wavs, spk = synthetic_speech(32, 3.0, seed=args.seed)
        return wavs, spk, None
    from anygpt.nn.speech_data import load_clips, pool_frames, read_manifest, speaker_index, whisper_targets

    clips = read_manifest(args.data, ["train"])
    wavs = load_clips(clips, cfg.sample_rate, progress=not args.no_progress)
    t50 = whisper_targets(clips, wavs, 320, args.out / "whisper50.npz", threads=args.threads,
                          progress=not args.no_progress)
    f = cfg.frame_hop // 320
    targets = [pool_frames(t50[c.id].astype(np.float32), f, -(-len(w) // cfg.frame_hop)).astype(np.float16)
               for c, w in zip(clips, wavs)]
    spk_ix = speaker_index(clips)
    return wavs, [spk_ix[c.speaker] for c in clips], targets


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    state = load_checkpoint(args.out)
    cfg = SpeechCodecConfig.from_dict(state["config"]) if state else SpeechCodecConfig(
        **{**SpeechCodecConfig().to_dict(), "seed": args.seed, **json.loads(args.config)})
    torch.manual_seed(args.seed)
    codec = CompactSpeechCodec(cfg)
    wavs, spk, targets = _load_data(args, cfg) if not args.export_only else (None, None, None)
    n_spk = int(state["n_speakers"]) if state else (max(spk) + 1)
    adversary = nn.Sequential(nn.Linear(cfg.latent_dim, 128), nn.GELU(), nn.Linear(128, n_spk))
    opt = torch.optim.AdamW(list(codec.parameters()) + list(adversary.parameters()), lr=args.lr,
                            betas=(0.8, 0.99), weight_decay=1e-4)
    run = TrainingRun(args.out, {"model": codec, "adversary": adversary}, opt, state, total=args.steps,
                      peak_lr=args.lr, warmup=args.warmup, max_minutes=args.max_minutes,
                      save_every=args.save_every, desc="speech tokenizer", progress=not args.no_progress,
                      extra={"config": cfg.to_dict(), "n_speakers": n_spk})
    if not args.export_only:
        mel_loss = MultiScaleMelLoss(cfg.sample_rate)
        mel_fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, 80)
        spk_t = torch.tensor(spk)
        weights = np.array([len(w) for w in wavs], np.float64)
        weights /= weights.sum()
        for step in run.steps():
            wav, idx, starts = draw_crops(wavs, args.batch, args.crop_frames, cfg.frame_hop, args.seed, step, weights)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                out = codec(wav)
                if out.wav is None:  # Griffin-Lim codec: regress the spectrum itself
                    mag, mel = spectrum_losses(out.logmag, codec.spectrogram(wav), mel_fb)
                    loss = mag + mel + out.vq_loss
                    terms = {"mel": mel.item(), "logmag": mag.item(), "commit": out.commit_loss.item()}
                else:
                    mel, sc = mel_loss(out.wav.float(), wav)
                    wave = (out.wav.float() - wav).abs().mean()
                    loss = mel + sc + wave + out.vq_loss
                    terms = {"mel": mel.item(), "sc": sc.item(), "wave": wave.item(), "commit": out.commit_loss.item()}
                if targets is not None and args.distill_weight > 0:
                    distill = distill_loss(out.semantic, targets, idx, starts, args.crop_frames)
                    loss = loss + args.distill_weight * distill
                    terms["distill"] = distill.item()
                if args.adversary_weight > 0:
                    feats = grad_reverse(out.q1.transpose(1, 2).float(), args.adversary_weight)
                    logits = adversary(feats).mean(1)
                    adv = F.cross_entropy(logits, spk_t[idx])
                    loss = loss + adv
                    terms["spk_ce"] = adv.item()
                    terms["spk_acc"] = (logits.argmax(-1) == spk_t[idx]).float().mean().item()
            run.optimise(loss)
            run.record(loss=loss.item(), **terms, ppl=[round(float(p), 1) for p in out.perplexities])
    if args.export:
        save_codec(codec.eval(), args.export, {"trained_steps": run.step, "wall_seconds": round(run.elapsed),
                                                "data": str(args.data),
                                                "command": "anygpt train speech-tokenizer " + " ".join(argv or sys.argv[1:])})
        print(f"exported to {args.export}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
