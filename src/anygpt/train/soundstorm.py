"""`anygpt train soundstorm`: train the compact SoundStorm acoustic model (anygpt.nn.soundstorm).

    anygpt train soundstorm --corpus data/tiny --out runs/soundstorm --steps 6500 --max-minutes 170 \\
        --threads 1 --export runs/soundstorm/model                  # the shipped recipe
    anygpt train soundstorm --corpus data/tiny --codec runs/speech-tokenizer/model --out runs/storm2
    anygpt train soundstorm --corpus data/tiny --codec runs/speech-units/model \
        --init src/anygpt/assets/soundstorm-tiny --out runs/soundstorm-units   # a new layer 1, the rest kept

Encodes once every training clip of CORPUS/speech (split "train") with the speech codec in
--codec (all RVQ layers; cached in OUT/codes.npz) and trains the acoustic model to fill
layers 2..K from layer 1. Each item of a batch is, with probability --cross-prompt, a ~1-3 s
prompt cut from ANOTHER clip of the same speaker followed by a crop of the target clip (the
voice-cloning situation: the voice must come from the prompt), otherwise one crop whose first
frames serve as the prompt (SoundStorm's own recipe). Loss: SoundStorm.loss (one random
acoustic layer masked at a cosine-scheduled rate, the layers above it fully masked).
AdamW, warmup then cosine; bf16 autocast. Checkpoints, resume, logs and the run flags are the
training core's (`anygpt.train.core`): rerunning the same command continues from the newest
checkpoint; batches depend only on seed and step. `--export DIR` writes DIR/config.json +
DIR/model.safetensors and a default voice prompt (the codes of 3 s of the first training clip)
in DIR/prompt.safetensors, which `load_tokenizer("speech", "compact", acoustic_path=DIR)` reads;
`--export-only` exports the newest checkpoint that way (after a run stopped by --max-minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from anygpt.asset_paths import SPEECH_TOKENIZER_TINY_DIR
from anygpt.errors import AnyGPTError, CheckpointError
from anygpt.nn.soundstorm import SoundStorm, SoundStormConfig
from anygpt.train.core import RunOptions, TrainingRun, add_run_args, lr_at
from anygpt import cli_flags
from anygpt.files import atomic_path
from anygpt.cli_flags import set_threads
from anygpt.train.recipes import add_corpus_arg, command_line, train_or_export
from anygpt.train.speech_tokenizer import train_clips

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
    with atomic_path(cache) as tmp:
        np.savez(tmp, __codec__=np.frombuffer(key, np.uint8), **out)
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
    p = cli_flags.Parser(prog="anygpt train soundstorm", description=__doc__)
    add_corpus_arg(p, "speech/manifest.jsonl")
    p.add_argument("--codec", type=Path, default=None,
                   help="speech codec folder whose codes are learned (default: the shipped speech-tokenizer-tiny)")
    p.add_argument("--batch", type=cli_flags.positive_int, default=16, help="items per step (default: 16)")
    p.add_argument("--target-frames", type=cli_flags.positive_int, default=100, help="target crop length in code frames (default: 100)")
    p.add_argument("--cross-prompt", type=cli_flags.fraction, default=0.5, help="share of items prompted by another clip (default: 0.5)")
    p.add_argument("--lr", type=cli_flags.positive_float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--warmup", type=cli_flags.count_or_zero, default=100, help="warmup steps (default: 100)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (default: on)")
    p.add_argument("--config", type=str, default="{}", help="JSON overrides of SoundStormConfig")
    p.add_argument("--init", type=Path, default=None, metavar="DIR",
                   help="start from an exported SoundStorm (the weights of the same name and shape: a new "
                        "codec's layer-1 embedding starts fresh)")
    add_run_args(p, out="runs/soundstorm", steps=2000, save_every=100, log_every=10, export_help="after training, export config.json + model.safetensors + prompt.safetensors here")
    return p


def model_config(a: argparse.Namespace, codec) -> SoundStormConfig:
    """SoundStormConfig for the codec's layers, with the --config overrides."""
    base = dict(num_quantizers=codec.cfg.num_codebooks - 1, codebook_size=codec.cfg.codebook_size,
                num_semantic_token_ids=codec.cfg.semantic_codebook_size, seed=a.seed)
    try:
        return SoundStormConfig.from_dict({**SoundStormConfig().to_dict(), **base, **json.loads(a.config)})
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise AnyGPTError(f"--config: not JSON overrides of SoundStormConfig ({e})") from None


def run_config(a: argparse.Namespace, cfg: SoundStormConfig, codec) -> dict:
    """What defines the run (a resume with other values is refused)."""
    return {"soundstorm": cfg.to_dict(), "codec": str(a.codec or "shipped"), "codec_config": codec.cfg.to_dict(),
            "corpus": str(a.corpus), "batch": a.batch, "target_frames": a.target_frames,
            "cross_prompt": a.cross_prompt, "lr": a.lr, "warmup": a.warmup, "steps": a.steps, "seed": a.seed,
            "bf16": a.bf16, "init": None if a.init is None else str(a.init)}


def corpus_codes(a: argparse.Namespace, codec, first_only: bool = False) -> tuple[list[np.ndarray], list[int]]:
    """Codes int64 [K, T] and speaker index of every training clip (of the first only: the
    export's prompt), from OUT/codes.npz when the codec is the same."""
    from anygpt.nn.speech_data import load_clips, speaker_index

    clips = train_clips(a.corpus)
    if first_only:
        clips = clips[:1]
    wavs = load_clips(clips, codec.cfg.sample_rate, progress=not a.no_progress)
    by_id = encode_corpus(codec, clips, wavs, Path(a.out) / "codes.npz", progress=not a.no_progress)
    spk_ix = speaker_index(clips)
    return [by_id[c.id].astype(np.int64) for c in clips], [spk_ix[c.speaker] for c in clips]


def fit(run: TrainingRun, model: SoundStorm, codes: list[np.ndarray], speakers: list[int],
        a: argparse.Namespace) -> None:
    for step in run.steps():
        b = draw_batch(codes, speakers, a.batch, a.target_frames, a.cross_prompt, a.seed, step)
        gen = torch.Generator().manual_seed(a.seed * 7919 + step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss, acc = model.loss(b["semantic"], b["acoustic"], b["prompt_len"], b["mask"], generator=gen)
        run.optimise(loss)
        run.record(loss=loss.item(), acc=acc.item())


def export_soundstorm(model: SoundStorm, folder: Path, prompt: torch.Tensor, training: dict) -> Path:
    """folder/config.json ({"soundstorm": config, **training}) + model.safetensors (float16) +
    prompt.safetensors ({"codes": LongTensor [K, P]}, the default voice prompt)."""
    from anygpt.nn.weights import inference_state, save_weights

    return save_weights(folder, inference_state(model), {"soundstorm": model.cfg.to_dict(), **training},
                        files={"prompt.safetensors": {"codes": prompt.long()}})


def main(argv: list[str] | None = None) -> int:
    from anygpt.nn.speech_codec import load_codec

    a = build_parser().parse_args(argv)
    set_threads(a.threads)
    codec_dir = a.codec or SPEECH_TOKENIZER_TINY_DIR
    if not (codec_dir / "config.json").is_file():
        raise CheckpointError(f"{codec_dir}: no speech codec there (config.json missing); give --codec a folder "
                              "written by `anygpt train speech-tokenizer --export`")
    codec = load_codec(codec_dir)
    cfg = model_config(a, codec)
    model = SoundStorm(cfg)
    if a.init is not None:
        from anygpt.nn.weights import load_matching

        fresh = load_matching(model, a.init)
        print(f"--init {a.init}: new {', '.join(fresh) or 'none'}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=1e-2)
    options = RunOptions.from_args(a)
    run = TrainingRun(options, modules={"model": model}, optimizer=opt, config=run_config(a, cfg, codec),
                      lr=lambda s: lr_at(s, a.steps, a.lr, a.warmup), desc="soundstorm")
    data: dict = {}

    def train() -> None:
        data["codes"], speakers = corpus_codes(a, codec)
        fit(run, model, data["codes"], speakers, a)

    def export(folder: Path) -> Path:
        codes = data.get("codes") or corpus_codes(a, codec, first_only=True)[0]
        prompt = torch.from_numpy(codes[0][:, : int(3 * codec.cfg.frame_rate)])
        return export_soundstorm(model.eval(), folder, prompt, {
            "trained_steps": run.step, "wall_seconds": round(run.elapsed), "data": str(a.corpus),
            "command": command_line("soundstorm", argv)})

    train_or_export(run, options, train, export)
    return 0


if __name__ == "__main__":  # `anygpt train NAME` is the command; this runs the module alone
    raise SystemExit(main(sys.argv[1:]))
