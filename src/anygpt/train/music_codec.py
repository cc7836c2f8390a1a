"""`anygpt train music-codec`: train the compact music codec (anygpt.nn.compact_music_codec) on CPU.

    anygpt train music-codec --corpus data/tiny --out runs/music-codec --steps 25000 \\
        --export runs/music-codec/model                        # the shipped recipe, ~4 h on 2 cores
    anygpt train music-codec --corpus data/tiny --out runs/music-25hz --downsample 4 \\
        --codebook-size 512 --steps 3600 --max-minutes 40     # the 25 Hz x 512 variant
    anygpt train music-codec --synthetic 8 --out /tmp/music-smoke --steps 20   # no corpus needed

Reads CORPUS/music/manifest.jsonl (split "train"; the 16 kHz copies `path_16k` when present,
else `path` resampled), draws random crops of --seconds, and trains with multi-scale mel +
spectral convergence + waveform L1 + RVQ commitment losses (AdamW, warmup then cosine).
Checkpoints, resume, logs and the run flags are the training core's (`anygpt.train.core`):
rerunning the same command continues from the newest checkpoint in OUT/checkpoints (crops
depend only on seed and step, so a resumed run draws the same batches). `--export DIR` writes
DIR/config.json + DIR/model.safetensors (float16, float32 codebooks), which
`load_tokenizer("music", "compact", path=DIR)` reads; `--export-only` exports the newest
checkpoint without training. `--synthetic N` trains on N generated clips of harmonic notes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from anygpt.asset_paths import MUSIC_CODEC_TINY_DIR
from anygpt.nn.compact_music_codec import CompactMusicCodec, LossWeights, MusicCodecConfig, codec_losses
from anygpt.nn.spectral_codec import MultiScaleMelLoss
from anygpt.train.core import RunOptions, TrainingRun, add_run_args, lr_at, set_threads
from anygpt.train.recipes import CorpusError, add_corpus_arg, command_line, train_or_export


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
        raise CorpusError(f"{manifest}: not found; build the corpus with `anygpt data build --preset tiny --out {data}`")
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
        raise CorpusError(f"{manifest}: no clips with split {split!r}")
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


# ---------------------------------------------------------------- export
def export_codec(model: CompactMusicCodec, folder: Path, training: dict) -> Path:
    """folder/config.json ({"codec", "frame_rate", "bitrate_bps", "training"}, the fields the
    tokenizer's loader reads) + folder/model.safetensors (float16, float32 codebooks)."""
    from anygpt.nn.weights import inference_state, save_weights

    cfg = model.cfg
    meta = {"codec": cfg.to_dict(), "frame_rate": cfg.frame_rate, "bitrate_bps": cfg.bitrate, "training": training}
    return save_weights(folder, inference_state(model), meta)


# ---------------------------------------------------------------- training
def model_config(a: argparse.Namespace) -> MusicCodecConfig:
    return MusicCodecConfig(codebook_size=a.codebook_size, downsample=a.downsample, seed=a.seed,
                            enc_dim=a.enc_dim, dec_dim=a.dec_dim, dec_blocks=a.dec_blocks)


def run_config(a: argparse.Namespace, cfg: MusicCodecConfig) -> dict:
    """What defines the run (a resume with other values is refused)."""
    return {"codec": cfg.to_dict(), "corpus": None if a.synthetic else str(a.corpus), "synthetic": a.synthetic,
            "batch": a.batch, "seconds": a.seconds, "lr": a.lr, "warmup": a.warmup, "steps": a.steps,
            "seed": a.seed, "bf16": a.bf16}


def fit(run: TrainingRun, model: CompactMusicCodec, a: argparse.Namespace) -> None:
    cfg = model.cfg
    length = int(a.seconds * cfg.sample_rate) // cfg.frame_hop * cfg.frame_hop
    if a.synthetic:
        clips = list(synthetic_music(a.synthetic, 4.0, cfg.sample_rate, seed=a.seed))
    else:
        clips = load_corpus(Path(a.corpus), "train", cfg.sample_rate)
    mel_loss = MultiScaleMelLoss(cfg.sample_rate)
    weights = LossWeights()
    for step in run.steps():
        x = draw_batch(clips, a.batch, length, a.seed, step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            y, vq = model(x)
        losses = codec_losses(y.float(), x, vq, mel_loss, weights)  # losses in float32
        run.optimise(losses["total"])
        run.record(**{k: float(v.detach()) for k, v in losses.items()},
                   ppl=[round(float(p), 1) for p in vq.perplexities])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anygpt train music-codec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arg(p, "music/manifest.jsonl")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="train on N generated clips instead of --corpus")
    p.add_argument("--batch", type=int, default=16, help="crops per step (default: 16)")
    p.add_argument("--seconds", type=float, default=1.28, help="crop length (default: 1.28)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--warmup", type=int, default=100, help="warmup steps (default: 100)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (default: on)")
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--downsample", type=int, default=2, help="STFT frames (100/s) per code frame: 2 -> 50 Hz, 4 -> 25 Hz")
    p.add_argument("--enc-dim", type=int, default=192)
    p.add_argument("--dec-dim", type=int, default=256)
    p.add_argument("--dec-blocks", type=int, default=6)
    add_run_args(p, out="runs/music-codec", steps=3000, save_every=200, log_every=10, ship=MUSIC_CODEC_TINY_DIR,
                 export_help="after training, export config.json + model.safetensors to this folder")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    set_threads(a.threads)
    cfg = model_config(a)
    model = CompactMusicCodec(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.8, 0.99), weight_decay=0.0)
    options = RunOptions.from_args(a)
    run = TrainingRun(options, modules={"model": model}, optimizer=opt, config=run_config(a, cfg),
                      lr=lambda s: lr_at(s, a.steps, a.lr, a.warmup), desc="music codec")
    command = command_line("music-codec", argv)
    train_or_export(run, options, lambda: fit(run, model, a), lambda folder: export_codec(
        model.eval(), folder, {"steps": run.step, "wall_seconds": round(run.elapsed, 1), "command": command}))
    return 0


if __name__ == "__main__":  # `anygpt train NAME` is the command; this runs the module alone
    raise SystemExit(main(sys.argv[1:]))
