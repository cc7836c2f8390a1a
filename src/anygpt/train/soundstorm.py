"""`anygpt train soundstorm`: train the compact SoundStorm acoustic model (anygpt.nn.soundstorm).

    anygpt train soundstorm --data data/tiny --codec src/anygpt/assets/speech-tokenizer-tiny \\
        --out runs/soundstorm --steps 2000 --export src/anygpt/assets/soundstorm-tiny

Encodes once every training clip of DATA/speech (split "train") with the speech codec in
--codec (all RVQ layers; cached in OUT/codes.npz) and trains the acoustic model to fill
layers 2..K from layer 1. Each item of a batch is, with probability --cross-prompt, a ~1-3 s
prompt cut from ANOTHER clip of the same speaker followed by a crop of the target clip (the
voice-cloning situation: the voice must come from the prompt), otherwise one crop whose first
frames serve as the prompt (SoundStorm's own recipe). Loss: SoundStorm.loss (one random
acoustic layer masked at a cosine-scheduled rate, the layers above it fully masked).
AdamW, warmup then cosine; bf16 autocast; OUT/last.pt saved atomically every --save-every
steps and on exit; running again with the same OUT resumes; batches depend only on seed and
step. `--export DIR` writes DIR/config.json + DIR/model.safetensors, with a default voice
prompt (the codes of 3 s of one training clip) in DIR/prompt.safetensors; `--export-only`
exports OUT/last.pt that way without training (after a run stopped by --max-minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from anygpt.nn.soundstorm import SoundStorm, SoundStormConfig, save_soundstorm
from anygpt.train.common import TrainingRun, load_checkpoint

PROMPT_FRAMES = (25, 75)  # prompt length range in code frames (1-3 s at 25 Hz)


def encode_corpus(codec, clips, wavs, cache: Path, progress: bool = True) -> dict[str, np.ndarray]:
    """Codes int16 [K, T] per clip id, cached in `cache` (.npz; recomputed if the codec changed)."""
    from tqdm import tqdm

    key = f"{codec.cfg.to_dict()}".encode()
    if cache.is_file():
        with np.load(cache) as z:
            if bytes(z["__codec__"]) == key and all(c.id in z.files for c in clips):
                return {c.id: z[c.id] for c in clips}
    hop = codec.cfg.frame_hop
    out = {}
    with torch.inference_mode():
        for c, w in tqdm(list(zip(clips, wavs)), desc="encode speech", disable=not progress, mininterval=5):
            n = -(-len(w) // hop) * hop
            x = torch.from_numpy(np.pad(w, (0, n - len(w))))[None, None]
            out[c.id] = codec.encode(x)[0].numpy().astype(np.int16)
    tmp = cache.with_suffix(".tmp.npz")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, __codec__=np.frombuffer(key, np.uint8), **out)
    tmp.replace(cache)
    return out


def draw_batch(codes: list[np.ndarray], speakers: list[int], batch: int, target_frames: int,
               cross_prompt: float, seed: int, step: int) -> dict[str, torch.Tensor]:
    """-> semantic [B, N], acoustic [B, N, Q], prompt_len [B], mask [B, N] (N = longest item)."""
    rng = np.random.default_rng(seed * 1_000_003 + step)
    by_speaker: dict[int, list[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    items, prompts = [], []
    for _ in range(batch):
        i = int(rng.integers(len(codes)))
        c = codes[i]
        others = by_speaker[speakers[i]]
        if rng.random() < cross_prompt and len(others) > 1:
            j = int(rng.choice([o for o in others if o != i]))
            p = int(rng.integers(*PROMPT_FRAMES))
            ps = int(rng.integers(0, max(1, codes[j].shape[1] - p + 1)))
            prompt = codes[j][:, ps: ps + p]
            ts = int(rng.integers(0, max(1, c.shape[1] - target_frames + 1)))
            items.append(np.concatenate([prompt, c[:, ts: ts + target_frames]], axis=1))
            prompts.append(prompt.shape[1])
        else:
            n = target_frames + PROMPT_FRAMES[1]
            st = int(rng.integers(0, max(1, c.shape[1] - n + 1)))
            seg = c[:, st: st + n]
            items.append(seg)
            prompts.append(int(rng.integers(0, seg.shape[1] // 2 + 1)))
    n = max(x.shape[1] for x in items)
    k = items[0].shape[0]
    arr = np.zeros((batch, k, n), np.int64)
    mask = np.zeros((batch, n), bool)
    for b, x in enumerate(items):
        arr[b, :, : x.shape[1]] = x
        mask[b, : x.shape[1]] = True
    t = torch.from_numpy(arr)
    return {"semantic": t[:, 0], "acoustic": t[:, 1:].transpose(1, 2).contiguous(),
            "prompt_len": torch.tensor(prompts), "mask": torch.from_numpy(mask)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anygpt train soundstorm", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/tiny"))
    p.add_argument("--codec", type=Path, default=None, help="speech codec folder (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("runs/soundstorm"))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--target-frames", type=int, default=100, help="target crop length in code frames")
    p.add_argument("--cross-prompt", type=float, default=0.5, help="share of items prompted by another clip")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--config", type=str, default="{}", help="JSON overrides of SoundStormConfig")
    p.add_argument("--export", type=Path, default=None)
    p.add_argument("--export-only", action="store_true", help="export OUT/last.pt to --export without training")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.export_only and not (args.export and (args.out / "last.pt").is_file()):
        raise SystemExit(f"--export-only needs --export DIR and a checkpoint {args.out / 'last.pt'}")
    torch.set_num_threads(args.threads)
    from anygpt.modalities.speech_tiny import DEFAULT_CODEC_DIR
    from anygpt.nn.speech_codec import load_codec
    from anygpt.nn.speech_data import load_clips, read_manifest, speaker_index

    codec = load_codec(args.codec or DEFAULT_CODEC_DIR)
    state = load_checkpoint(args.out)
    base = dict(num_quantizers=codec.cfg.num_codebooks - 1, codebook_size=codec.cfg.codebook_size,
                num_semantic_token_ids=codec.cfg.semantic_codebook_size, seed=args.seed)
    cfg = SoundStormConfig.from_dict(state["config"]) if state else SoundStormConfig.from_dict(
        {**SoundStormConfig().to_dict(), **base, **json.loads(args.config)})
    model = SoundStorm(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=1e-2)
    run = TrainingRun(args.out, {"model": model}, opt, state, total=args.steps, peak_lr=args.lr,
                      warmup=args.warmup, max_minutes=args.max_minutes, save_every=args.save_every,
                      desc="soundstorm", progress=not args.no_progress, extra={"config": cfg.to_dict()})
    clips = read_manifest(args.data, ["train"])
    wavs = load_clips(clips, codec.cfg.sample_rate, progress=not args.no_progress)
    by_id = encode_corpus(codec, clips, wavs, args.out / "codes.npz", progress=not args.no_progress)
    codes = [by_id[c.id].astype(np.int64) for c in clips]
    spk_ix = speaker_index(clips)
    speakers = [spk_ix[c.speaker] for c in clips]
    for step in () if args.export_only else run.steps():
        b = draw_batch(codes, speakers, args.batch, args.target_frames, args.cross_prompt, args.seed, step)
        gen = torch.Generator().manual_seed(args.seed * 7919 + step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, acc = model.loss(b["semantic"], b["acoustic"], b["prompt_len"], b["mask"], generator=gen)
        run.optimise(loss)
        run.record(loss=loss.item(), acc=acc.item())
    if args.export:
        from safetensors.torch import save_file

        save_soundstorm(model.eval(), args.export, {
            "trained_steps": run.step, "wall_seconds": round(run.elapsed),
            "data": str(args.data), "command": "anygpt train soundstorm " + " ".join(argv or sys.argv[1:])})
        prompt = torch.from_numpy(codes[0][:, : int(3 * codec.cfg.frame_rate)].astype(np.int64))
        save_file({"codes": prompt.contiguous()}, str(Path(args.export) / "prompt.safetensors"))
        print(f"exported to {args.export}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
