"""`anygpt train music-codec`: train the compact music codec (anygpt.nn.music_codec) on CPU.

    anygpt train music-codec --data data/tiny --out runs/music-codec --steps 25000 \\
        --export src/anygpt/assets/music-codec-tiny          # the shipped model, ~4 h on 2 cores
    anygpt train music-codec --data data/tiny --out runs/music-25hz --downsample 4 \\
        --codebook-size 512 --steps 3600 --minutes 40       # the 25 Hz x 512 variant

Reads DATA/music/manifest.jsonl (split "train"; the 16 kHz copies `path_16k` when present,
else `path` resampled), draws random crops of --seconds, trains with multi-scale mel +
spectral convergence + waveform L1 + RVQ commitment losses (AdamW, warmup then cosine),
saves OUT/last.pt every --save-every steps and on exit (atomic), and resumes from it when run
again with the same OUT (a killed job loses at most --save-every steps; crops depend only on
seed and step, so a resumed run draws the same batches). Logs to OUT/log.jsonl.
`--export DIR` writes DIR/config.json + DIR/model.safetensors (fp16) after training;
`--export-only` exports OUT/last.pt without training. `--synthetic` trains on generated
tones (smoke tests, no corpus needed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from anygpt.train.common import atomic_torch_save, lr_at
from anygpt.nn.music_codec import CompactMusicCodec, LossWeights, MultiScaleMelLoss, MusicCodecConfig, codec_losses


# ---------------------------------------------------------------- data
def synthetic_music(n: int, seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """n clips of random harmonic notes (pitch, onset, decay, timbre): FloatTensor [n, S]."""
    g = torch.Generator().manual_seed(seed)
    s = int(seconds * sample_rate)
    t = torch.arange(s) / sample_rate
    out = torch.zeros(n, s)
    for i in range(n):
        n_notes = int(torch.randint(2, 8, (), generator=g))
        for _ in range(n_notes):
            midi = float(torch.randint(48, 84, (), generator=g))
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            onset = float(torch.rand((), generator=g)) * seconds * 0.8
            decay = 0.5 + 2 * float(torch.rand((), generator=g))
            env = torch.where(t >= onset, torch.exp(-(t - onset) * decay / max(seconds, 1e-3) * 4), torch.zeros(()))
            env = env * (t >= onset)
            tone = sum(torch.sin(2 * math.pi * f0 * h * t) / h ** 1.5 for h in range(1, 6) if f0 * h < sample_rate / 2)
            out[i] += 0.2 * env * tone
    return out / out.abs().amax(dim=1, keepdim=True).clamp(min=1e-3) * 0.9


def load_corpus(data: Path, split: str, sample_rate: int, limit: int | None = None) -> list[torch.Tensor]:
    """Clips of one split of DATA/music/manifest.jsonl as FloatTensor [S] at sample_rate."""
    from anygpt.media_io import load_audio

    manifest = data / "music" / "manifest.jsonl"
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: not found; build the corpus with `anygpt data build --preset tiny --out {data}`")
    clips = []
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("split") != split:
            continue
        rel = rec["path_16k"] if rec.get("path_16k") and sample_rate == 16000 else rec["path"]
        clips.append(load_audio(data / "music" / rel, sample_rate)[0])
        if limit and len(clips) >= limit:
            break
    if not clips:
        raise SystemExit(f"{manifest}: no clips with split {split!r}")
    return clips


def draw_batch(clips: list[torch.Tensor], batch: int, length: int, seed: int, step: int) -> torch.Tensor:
    """Random crops FloatTensor [batch, 1, length] (deterministic in seed and step); crops that are
    nearly silent are redrawn (up to 4 times); a random gain of -12..0 dB is applied."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    out = torch.zeros(batch, 1, length)
    for b in range(batch):
        for _ in range(5):
            clip = clips[int(torch.randint(len(clips), (), generator=g))]
            if clip.numel() < length:
                crop = torch.nn.functional.pad(clip, (0, length - clip.numel()))
            else:
                start = int(torch.randint(clip.numel() - length + 1, (), generator=g))
                crop = clip[start:start + length]
            if crop.pow(2).mean().sqrt() > 1e-3:
                break
        gain = 10 ** (-12 * float(torch.rand((), generator=g)) / 20)
        out[b, 0] = crop * gain
    return out


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model, opt, step: int, elapsed: float, args: dict) -> None:
    atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                       "elapsed": elapsed, "config": model.cfg.to_dict(), "args": args}, path)


def export(ckpt: Path, out_dir: Path) -> Path:
    """OUT/last.pt -> out_dir/config.json + out_dir/model.safetensors (fp16 weights,
    float32 codebooks). Returns out_dir."""
    from anygpt.nn.weights import inference_state, save_weights

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    cfg = MusicCodecConfig.from_dict(state["config"])
    model = CompactMusicCodec(cfg)
    model.load_state_dict(state["model"])
    meta = {"codec": cfg.to_dict(), "frame_rate": cfg.frame_rate, "bitrate_bps": cfg.bitrate,
            "training": {"steps": state["step"], "wall_seconds": round(state["elapsed"], 1),
                         "command": state["args"].get("command")}}
    return save_weights(out_dir, inference_state(model), meta)


# ---------------------------------------------------------------- training
def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    cfg = MusicCodecConfig(codebook_size=args.codebook_size, downsample=args.downsample, seed=args.seed,
                           enc_dim=args.enc_dim, dec_dim=args.dec_dim, dec_blocks=args.dec_blocks)
    state = None
    if ckpt.exists() and not args.restart:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        cfg = MusicCodecConfig.from_dict(state["config"])
    model = CompactMusicCodec(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        print(f"resuming {ckpt} at step {step} ({elapsed / 60:.1f} min trained)", file=sys.stderr)

    length = int(args.seconds * cfg.sample_rate) // cfg.frame_hop * cfg.frame_hop
    if args.synthetic:
        clips = list(synthetic_music(args.synthetic, 4.0, cfg.sample_rate, seed=args.seed))
    else:
        clips = load_corpus(Path(args.data), "train", cfg.sample_rate)
    mel_loss = MultiScaleMelLoss(cfg.sample_rate)
    weights = LossWeights()
    model.train()
    log = (out / "log.jsonl").open("a")
    budget = args.minutes * 60 if args.minutes else float("inf")
    history = []
    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, desc="music-codec", disable=args.quiet, dynamic_ncols=True)
    t_last_save = time.time()
    t0 = time.time() - elapsed
    try:
        while step < args.steps and time.time() - t0 < budget:
            x = draw_batch(clips, args.batch, length, args.seed, step)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                y, vq = model(x)
            losses = codec_losses(y.float(), x, vq, mel_loss, weights)  # losses in float32
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            rec = {k: round(float(v.detach()), 5) for k, v in losses.items()}
            rec.update(step=step, minutes=round((time.time() - t0) / 60, 2),
                       ppl=[round(float(p), 1) for p in vq.perplexities])
            history.append(rec)
            bar.update(1)
            bar.set_postfix(mel=f"{rec['mel']:.3f}", wave=f"{rec['wave']:.4f}", ppl=rec["ppl"][0])
            if step % args.log_every == 0:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if step % args.save_every == 0 or time.time() - t_last_save > 300:
                save_checkpoint(ckpt, model, opt, step, time.time() - t0, vars(args))
                t_last_save = time.time()
    finally:
        bar.close()
        save_checkpoint(ckpt, model, opt, step, time.time() - t0, vars(args))
        log.close()
    result = {"step": step, "wall_seconds": round(time.time() - t0, 1), "history": history}
    if args.export:
        export(ckpt, Path(args.export))
        print(f"exported {args.export}", file=sys.stderr)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anygpt train music-codec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/tiny", help="corpus folder with music/manifest.jsonl")
    p.add_argument("--out", default="runs/music-codec", help="run folder (checkpoint, log); resumed if present")
    p.add_argument("--steps", type=int, default=3000, help="total optimiser steps (schedule length)")
    p.add_argument("--minutes", type=float, default=0, help="stop after this many minutes of training (0: no limit)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.28, help="crop length")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a loaded machine)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--downsample", type=int, default=2, help="STFT frames (100/s) per code frame: 2 -> 50 Hz, 4 -> 25 Hz")
    p.add_argument("--enc-dim", type=int, default=192)
    p.add_argument("--dec-dim", type=int, default=256)
    p.add_argument("--dec-blocks", type=int, default=6)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--synthetic", type=int, default=0, help="train on N generated clips instead of --data")
    p.add_argument("--restart", action="store_true", help="ignore OUT/last.pt and start over")
    p.add_argument("--export", default=None, help="after training, export weights to this folder")
    p.add_argument("--export-only", action="store_true", help="export OUT/last.pt to --export and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command = "anygpt train music-codec " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.export_only:
        if not args.export:
            raise SystemExit("--export-only needs --export DIR")
        export(Path(args.out) / "last.pt", Path(args.export))
        print(f"exported {args.export}")
        return 0
    res = train(args)
    print(json.dumps({"step": res["step"], "wall_seconds": res["wall_seconds"],
                      "last": res["history"][-1] if res["history"] else None}))
    return 0
