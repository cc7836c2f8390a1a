"""`anygpt train image-tokenizer`: train the compact SEED-style image tokenizer and decoder.

Example (the shipped weights: four chained runs with one thread on a 2-core CPU shared with other
training jobs, each continuing from the previous export; v3 adds the object-outline edge loss
and the cell-attribute head, v4 and v5 40,000 rendered training scenes):

    anygpt train image-tokenizer --data data/tiny --out runs/image-tokenizer-v2 \\
        --config '{"encoder_layers": 2, "locality": [64, 32, 16, 0], "upsample_channels": [96, 48, 24], "refine_channels": 0}' \\
        --steps 2800 --vq-warmup 400 --object-weight 10 --l2-weight 10 --threads 1 --max-minutes 34
    anygpt train image-tokenizer --data data/tiny --out runs/image-tokenizer-v3 \\
        --init runs/image-tokenizer-v2/image-tokenizer-tiny --steps 2400 --warmup 100 --lr 1e-3 \\
        --object-weight 10 --l2-weight 10 --edge-weight 2 --attr-weight 0.5 --threads 1 --fp16 --max-minutes 23
    anygpt train image-tokenizer --data data/tiny --out runs/image-tokenizer-v4 \\
        --init runs/image-tokenizer-v3/image-tokenizer-tiny --extra-scenes 40000 --steps 3000 --vq-warmup 0 \\
        --lr 1e-3 --object-weight 10 --l2-weight 10 --edge-weight 2 --attr-weight 0.5 --threads 1 --fp16
    anygpt train image-tokenizer --data data/tiny --out runs/image-tokenizer-v5 \\
        --init runs/image-tokenizer-v4/image-tokenizer-tiny --extra-scenes 40000 --steps 2800 --vq-warmup 0 \\
        --lr 5e-4 --object-weight 10 --l2-weight 10 --edge-weight 2 --attr-weight 0.5 --threads 1 --fp16 --ship

Reads DATA/images/manifest.jsonl (split "train"), embeds every caption once with
all-MiniLM-L6-v2 (cached in OUT/captions.pt), optionally adds scenes rendered with
anygpt.data.scenes (never a held-out (shape, colour) pair), and trains
anygpt.nn.query_former.QueryTokenizer. A checkpoint is written every --save-every steps
(OUT/checkpoint.pt); running the same command again resumes from it. At the end the weights
and config are exported to OUT/image-tokenizer-tiny/ (model.safetensors, config.json,
training.json), and with --ship also to the package folder anygpt/assets/image-tokenizer-tiny.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anygpt.nn.query_former import QueryTokenizer, QueryTokenizerConfig
from anygpt.train.common import lr_at

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "image-tokenizer-tiny"


# ---------------------------------------------------------------- data
def load_split(data_dir: str | Path, splits: tuple[str, ...], size: int = 64,
               kinds: tuple[str, ...] | None = None) -> dict:
    """Images of DATA/images/manifest.jsonl in `splits` -> {"images": uint8 [N, 3, S, S],
    "captions": [...], "records": [...]} (records are the manifest lines)."""
    from anygpt.media_io import load_image

    corpus = Path(data_dir) / "images"
    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} not found: build the corpus first with `anygpt data build --preset tiny --out {data_dir}`")
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [r for r in records if r["split"] in splits and (kinds is None or r["kind"] in kinds)]
    imgs = np.zeros((len(records), 3, size, size), dtype=np.uint8)
    for i, r in enumerate(records):
        imgs[i] = (load_image(corpus / r["path"], size=(size, size)).numpy() * 255).round().astype(np.uint8)
    return {"images": torch.from_numpy(imgs), "captions": [r["caption"] for r in records], "records": records}


def render_scenes(n: int, seed: int, size: int = 64) -> dict:
    """n training scenes (no held-out pair) drawn with anygpt.data.scenes, deterministic for seed."""
    from anygpt.data import scenes

    rng = random.Random(f"image-tokenizer-extra-scenes-{seed}")
    imgs = np.zeros((n, 3, size, size), dtype=np.uint8)
    caps, recs = [], []
    for i in range(n):
        spec = scenes.sample_scene(rng, heldout=False)
        imgs[i] = np.asarray(scenes.render_scene(spec, size), dtype=np.uint8).transpose(2, 0, 1)
        caps.append(scenes.caption(spec, rng))
        recs.append({"kind": "scene", "split": "train", "attributes": {"source": "scenes", **scenes.attributes(spec)}})
    return {"images": torch.from_numpy(imgs), "captions": caps, "records": recs}


def embed_captions(captions: list[str], cache: Path | None = None) -> torch.Tensor:
    """all-MiniLM-L6-v2 embeddings [N, 384] (unit norm), cached by the captions' hash."""
    key = hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()
    if cache is not None and cache.is_file():
        blob = torch.load(cache, map_location="cpu", weights_only=True)
        if blob.get("key") == key:
            return blob["emb"]
    from anygpt.eval.captions import minilm

    uniq = sorted(set(captions))
    emb = minilm().encode(uniq, batch_size=128, convert_to_tensor=True, normalize_embeddings=True,
                          show_progress_bar=False).float().cpu()
    index = {c: i for i, c in enumerate(uniq)}
    out = emb[torch.tensor([index[c] for c in captions], dtype=torch.long)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"key": key, "emb": out}, tmp)
        os.replace(tmp, cache)
    return out


# ---------------------------------------------------------------- attribute head
def scene_cell_labels(records: list[dict]) -> torch.Tensor:
    """Per-cell object attributes of scene records -> LongTensor [N, 9, 3]: for each cell of the
    3x3 scene grid (reading order) the class of (shape, colour, size), 0 = empty cell, k = the
    k-th entry of anygpt.data.scenes.SHAPES / PALETTE / SIZES plus one; -100 (ignored) for every
    record that is not a scene (digits, emoji)."""
    from anygpt.data import scenes

    vocab = (scenes.SHAPES, tuple(scenes.PALETTE), scenes.SIZES)
    out = torch.full((len(records), scenes.GRID ** 2, 3), -100, dtype=torch.long)
    for i, r in enumerate(records):
        attrs = r.get("attributes") or {}
        if r.get("kind") != "scene" or "objects" not in attrs:
            continue
        out[i] = 0
        for o in attrs["objects"]:
            out[i, o["row"] * scenes.GRID + o["col"]] = torch.tensor(
                [v.index(o[k]) + 1 for v, k in zip(vocab, ("shape", "color", "size"))])
    return out


class CellAttributeHead(torch.nn.Module):
    """Training-only linear read-out: all N code vectors [B, N, D] (flattened) -> logits of each
    scene cell's shape / colour / size (scene_cell_labels). Its cross-entropy, back through the
    straight-through quantizer, makes the codes carry the object attributes that pixel losses
    barely see (a star and a circle of 10 px differ in a handful of pixels). Not exported."""

    def __init__(self, num_codes: int, dim: int, cells: int = 9) -> None:
        super().__init__()
        from anygpt.data import scenes

        self.classes = (len(scenes.SHAPES) + 1, len(scenes.PALETTE) + 1, len(scenes.SIZES) + 1)
        self.cells = cells
        self.proj = torch.nn.Linear(num_codes * dim, cells * sum(self.classes))

    def loss(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z [B, N, D]; labels LongTensor [B, cells, 3] -> mean cross-entropy over the 3 attributes."""
        logits = self.proj(z.flatten(1).float()).view(len(z), self.cells, sum(self.classes))
        if bool((labels[..., 0] < 0).all()):
            return logits.sum() * 0.0
        parts = logits.split(self.classes, dim=-1)
        return sum(torch.nn.functional.cross_entropy(p.reshape(-1, p.shape[-1]), labels[..., j].reshape(-1),
                                                     ignore_index=-100) for j, p in enumerate(parts)) / 3


# ---------------------------------------------------------------- training
def _batch_indices(step: int, batch: int, n: int, seed: int) -> torch.Tensor:
    """Deterministic epoch-shuffled batch for `step` (so a resumed run sees the same batches)."""
    start = step * batch
    idx = []
    while len(idx) < batch:
        epoch, off = divmod(start + len(idx), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = min(batch - len(idx), n - off)
        idx.extend(perm[off:off + take].tolist())
    return torch.tensor(idx, dtype=torch.long)


def train(model: QueryTokenizer, images: torch.Tensor, text_emb: torch.Tensor | None, *, steps: int,
          batch: int = 32, lr: float = 2e-3, warmup: int = 100, seed: int = 0, bf16: bool = True,
          contrastive_weight: float = 0.1, out: Path | None = None, save_every: int = 200,
          progress: bool = True, log_every: int = 25, max_minutes: float | None = None,
          vq_warmup: int = 0, trainable: str = "all", object_weight: float = 0.0,
          l2_weight: float = 1.0, edge_weight: float = 0.0, attr_weight: float = 0.0,
          cell_labels: torch.Tensor | None = None) -> list[dict]:
    """Train in place; returns the log (one dict every log_every steps).

    images: uint8 [N, 3, S, S]; text_emb: [N, 384] or None. With `out`, checkpoints to
    out/checkpoint.pt every save_every steps and resumes from it. max_minutes: stop early (after
    a checkpoint) once this much training time has passed in total. vq_warmup: steps trained
    without the codebook (continuous codes); then the codebook is k-means initialised on the
    query outputs of 16 batches and quantization starts. trainable="decoder": encoder, query
    former and codebook frozen (codes fixed), only the decoder learns. object_weight, l2_weight:
    edge_weight: see QueryTokenizer.forward. attr_weight: weight of the CellAttributeHead loss
    on the code vectors (needs cell_labels [N, 9, 3] from scene_cell_labels; the head is trained
    with the model, checkpointed, and not exported).
    """
    if trainable == "decoder":
        dec = ("code_pos", "code_layers", "code_norm", "pixel_queries", "decoder", "decoder_norm", "to_pixels", "upsampler",
               "refine")
        for name, p in model.named_parameters():
            p.requires_grad_(name.split(".")[0] in dec)
        contrastive_weight = 0.0
    elif trainable != "all":
        raise ValueError(f"trainable must be 'all' or 'decoder', not {trainable!r}")
    torch.manual_seed(seed)
    head = None
    if attr_weight > 0:
        if cell_labels is None:
            raise ValueError("attr_weight > 0 needs cell_labels (scene_cell_labels of the training records)")
        head = CellAttributeHead(model.cfg.num_queries, model.cfg.dim)
    decay, no_decay = [], []
    params = list(model.named_parameters()) + ([("attr_head." + k, p) for k, p in head.named_parameters()] if head else [])
    for name, p in params:
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or name.endswith(("pos", "tokens", "queries")) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))
    step, log, elapsed = 0, [], 0.0
    ckpt = out / "checkpoint.pt" if out is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        if head is not None:
            head.load_state_dict(state["attr_head"])
        opt.load_state_dict(state["opt"])
        model.quantizer._gen.set_state(state["vq_gen"])
        step, elapsed = int(state["step"]), float(state.get("elapsed", 0.0))
        log = json.loads(state.get("log", "[]"))
        print(f"resuming from {ckpt} at step {step}/{steps}", file=sys.stderr)
    model.train()
    n = len(images)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=step, desc="image-tokenizer", unit="step", dynamic_ncols=True)
    t0 = time.time()
    acc: dict[str, float] = {}
    while step < steps:
        if trainable == "decoder":
            model.quantizer.eval()  # codebook frozen: no EMA updates or restarts
        if vq_warmup and step == vq_warmup:
            sample = torch.cat([_batch_indices(step + i, batch, n, seed + 1) for i in range(16)])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model.init_codebook(images[sample].float() / 255.0)
        idx = _batch_indices(step, batch, n, seed)
        x = images[idx].float() / 255.0
        t = text_emb[idx] if text_emb is not None else None
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup, floor=0.05)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            res = model(x, t, contrastive_weight=contrastive_weight, quantize=step >= vq_warmup,
                        object_weight=object_weight, l2_weight=l2_weight, edge_weight=edge_weight)
            if head is not None:
                res["attr"] = head.loss(res["z"], cell_labels[idx])
                res["loss"] = res["loss"] + attr_weight * res["attr"]
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params if p.requires_grad], 1.0)
        opt.step()
        step += 1
        for k in ("loss", "l1", "l2", "grad", "edge", "attr", "vq", "perplexity", "contrastive"):
            if k in res and res[k] is not None:
                acc[k] = acc.get(k, 0.0) + float(res[k].detach())
        acc["_n"] = acc.get("_n", 0) + 1
        if step % log_every == 0 or step == steps:
            entry = {"step": step, **{k: v / acc["_n"] for k, v in acc.items() if k != "_n"},
                     "elapsed_s": elapsed + time.time() - t0}
            log.append(entry)
            acc = {}
            if bar is not None:
                bar.set_postfix(loss=f"{entry['loss']:.3f}", l1=f"{entry['l1']:.3f}", ppl=f"{entry['perplexity']:.0f}")
        if bar is not None:
            bar.update(1)
        over = max_minutes is not None and elapsed + time.time() - t0 > 60 * max_minutes
        if ckpt is not None and (step % save_every == 0 or step == steps or over):
            _save_checkpoint(ckpt, model, opt, step, elapsed + time.time() - t0, log, head)
        if over:
            print(f"stopping at step {step}: --max-minutes {max_minutes} reached", file=sys.stderr)
            break
    if bar is not None:
        bar.close()
    model.eval()
    return log


def _save_checkpoint(path: Path, model, opt, step: int, elapsed: float, log: list, head=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
             "vq_gen": model.quantizer._gen.get_state(), "log": json.dumps(log)}
    if head is not None:
        state["attr_head"] = head.state_dict()
    torch.save(state, tmp)
    os.replace(tmp, path)


def export(model: QueryTokenizer, folder: Path, meta: dict | None = None, half: bool = False) -> Path:
    """Write folder/model.safetensors (fp32, or fp16 with half=True: the loader casts back to
    fp32) + config.json (+ training.json)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to(dtype).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items() if k not in ("quantizer.embed_sum",)}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(model.cfg.to_json() + "\n", encoding="utf-8")
    if meta is not None:
        (folder / "training.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


@torch.no_grad()
def evaluate_recon(model: QueryTokenizer, images: torch.Tensor, batch: int = 64) -> dict:
    """Mean L1 and PSNR of reconstructions of uint8 images [N, 3, S, S]."""
    model.eval()
    l1 = mse = 0.0
    codes = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].float() / 255.0
        c = model.encode(x)
        r = model.decode(c)
        codes.append(c)
        l1 += float((r - x).abs().mean(dim=(1, 2, 3)).sum())
        mse_i = ((r - x) ** 2).mean(dim=(1, 2, 3))
        mse += float((10 * torch.log10(1 / mse_i.clamp(min=1e-10))).sum())
    n = len(images)
    used = int(torch.cat(codes).unique().numel()) if codes else 0
    return {"l1": l1 / n, "psnr": mse / n, "codes_used": used}


# ---------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="anygpt train image-tokenizer",
        description="Train the compact SEED-style image tokenizer (32 semantic codes per 64x64 image) "
                    "and its decoder on the image corpus.",
        epilog="the shipped recipe (its --config, loss weights and steps): the module docstring, or "
               "'command' in anygpt/assets/image-tokenizer-tiny/training.json")
    ap.add_argument("--data", required=True, help="corpus folder (with images/manifest.jsonl)")
    ap.add_argument("--out", required=True, help="run folder (checkpoint, caption cache, export)")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra-scenes", type=int, default=0,
                    help="also train on this many freshly rendered scenes (never a held-out pair)")
    ap.add_argument("--contrastive-weight", type=float, default=0.1)
    ap.add_argument("--vq-warmup", type=int, default=400, help="steps before the codebook is switched on")
    ap.add_argument("--init", default=None, help="start from an exported folder (model.safetensors + config.json)")
    ap.add_argument("--train", choices=("all", "decoder"), default="all",
                    help="decoder: fine-tune only the decoder on fixed codes")
    ap.add_argument("--object-weight", type=float, default=0.0,
                    help="extra L1/L2 weight on pixels that differ from the background")
    ap.add_argument("--l2-weight", type=float, default=1.0,
                    help="weight of the squared-error term (L1 alone settles on the background median)")
    ap.add_argument("--edge-weight", type=float, default=0.0,
                    help="weight of an image-gradient L1 term on the objects and their outline")
    ap.add_argument("--attr-weight", type=float, default=0.0,
                    help="weight of a training-only head reading each scene cell's shape/colour/size from the codes")
    ap.add_argument("--config", default=None,
                    help="QueryTokenizerConfig overrides: a JSON file, or inline JSON starting with '{'")
    ap.add_argument("--no-bf16", action="store_true", help="train in float32 (bf16 autocast by default)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 by default: on a shared 2-core machine a second thread made steps 5x slower)")
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop early after this much training time")
    ap.add_argument("--fp16", action="store_true", help="export the weights in float16 (half the size)")
    ap.add_argument("--ship", action="store_true", help=f"also export to {ASSET_DIR}")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    overrides = {}
    if args.config:
        overrides = json.loads(args.config if args.config.lstrip().startswith("{") else Path(args.config).read_text())
    cfg = QueryTokenizerConfig.from_dict({**overrides, "seed": args.seed})
    data = load_split(args.data, ("train",), size=cfg.image_size)
    images, captions, records = data["images"], data["captions"], data["records"]
    if args.extra_scenes:
        extra = render_scenes(args.extra_scenes, args.seed, cfg.image_size)
        images = torch.cat([images, extra["images"]])
        captions = captions + extra["captions"]
        records = records + extra["records"]
    print(f"training images: {len(images)}", file=sys.stderr)
    text_emb = embed_captions(captions, out / "captions.pt") if args.contrastive_weight > 0 else None
    if args.init:
        from anygpt.modalities.image_tokenizers import TinyImageTokenizer

        model = TinyImageTokenizer.from_folder(args.init).model
        cfg = model.cfg
    else:
        model = QueryTokenizer(cfg)
    log = train(model, images, text_emb, steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                seed=args.seed, bf16=not args.no_bf16, contrastive_weight=args.contrastive_weight, out=out,
                save_every=args.save_every, max_minutes=args.max_minutes, vq_warmup=0 if args.init else args.vq_warmup,
                trainable=args.train, object_weight=args.object_weight, l2_weight=args.l2_weight,
                edge_weight=args.edge_weight, attr_weight=args.attr_weight,
                cell_labels=scene_cell_labels(records) if args.attr_weight > 0 else None)
    val = load_split(args.data, ("val",), size=cfg.image_size)
    metrics = evaluate_recon(model, val["images"]) if len(val["images"]) else {}
    meta = {"command": "anygpt train image-tokenizer " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "steps": args.steps, "vq_warmup": 0 if args.init else args.vq_warmup, "init": args.init, "train": args.train,
            "object_weight": args.object_weight, "l2_weight": args.l2_weight,
            "edge_weight": args.edge_weight, "attr_weight": args.attr_weight, "steps_done": log[-1]["step"] if log else 0, "batch": args.batch, "lr": args.lr, "seed": args.seed,
            "train_images": len(images), "extra_scenes": args.extra_scenes,
            "train_seconds": log[-1]["elapsed_s"] if log else None,
            "wall_seconds_this_invocation": time.time() - t_start,
            "final": log[-1] if log else None, "val": metrics}
    folder = export(model, out / "image-tokenizer-tiny", meta, half=args.fp16)
    (out / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log), encoding="utf-8")
    print(f"exported {folder}; val {metrics}", file=sys.stderr)
    if args.ship:
        ASSET_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json", "training.json"):
            shutil.copyfile(folder / name, ASSET_DIR / name)
        print(f"shipped to {ASSET_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
