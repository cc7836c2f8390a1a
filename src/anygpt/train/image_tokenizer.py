"""`anygpt train image-tokenizer`: train the compact SEED-style image tokenizer and decoder.

Example (the shipped weights: four chained runs with one thread on a 2-core CPU shared with other
training jobs, each continuing from the previous export; v3 adds the object-outline edge loss
and the cell-attribute head, v4 and v5 40,000 rendered training scenes):

    anygpt train image-tokenizer --corpus data/tiny --out runs/image-tokenizer-v2 \\
        --config '{"encoder_layers": 2, "locality": [64, 32, 16, 0], "upsample_channels": [96, 48, 24], "refine_channels": 0}' \\
        --steps 2800 --vq-warmup 400 --object-weight 10 --l2-weight 10 --threads 1 --max-minutes 34 \\
        --export runs/image-tokenizer-v2/image-tokenizer-tiny
    anygpt train image-tokenizer --corpus data/tiny --out runs/image-tokenizer-v3 \\
        --init runs/image-tokenizer-v2/image-tokenizer-tiny --steps 2400 --warmup 100 --lr 1e-3 \\
        --object-weight 10 --l2-weight 10 --edge-weight 2 --attr-weight 0.5 --threads 1 --fp16 --max-minutes 23 \\
        --export runs/image-tokenizer-v3/image-tokenizer-tiny
    anygpt train image-tokenizer --corpus data/tiny --out runs/image-tokenizer-v4 \\
        --init runs/image-tokenizer-v3/image-tokenizer-tiny --extra-scenes 40000 --steps 3000 --vq-warmup 0 \\
        --lr 1e-3 --object-weight 10 --l2-weight 10 --edge-weight 2 --attr-weight 0.5 --threads 1 --fp16 \\
        --export runs/image-tokenizer-v4/image-tokenizer-tiny
    anygpt train image-tokenizer --corpus data/tiny --out runs/image-tokenizer-v5 \\
        --init runs/image-tokenizer-v4/image-tokenizer-tiny --extra-scenes 40000 --steps 2800 --vq-warmup 0 \\
        --lr 5e-4 --object-weight 10 --l2-weight 10 --edge-weight 2 --attr-weight 0.5 --threads 1 --fp16 \\
        --export runs/image-tokenizer-v5/image-tokenizer-tiny

Reads CORPUS/images/manifest.jsonl (split "train"), embeds every caption once with
all-MiniLM-L6-v2 (cached in OUT/captions.safetensors), optionally adds scenes rendered with
anygpt.data.scenes (never a held-out (shape, colour) pair), and trains
anygpt.nn.query_former.QueryTokenizer. Checkpoints, resume, logs and the run flags are the
training core's (`anygpt.train.core`): rerunning the same command continues from the newest
checkpoint (batches depend only on seed and step). `--export DIR` writes DIR/model.safetensors,
DIR/config.json (the QueryTokenizerConfig) and DIR/training.json (the command, the recipe and
the reconstruction figures on the corpus's "val" split), which
`load_tokenizer("image", "compact", path=DIR)` reads; `--export-only` exports the newest checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from anygpt.asset_paths import IMAGE_TOKENIZER_TINY_DIR
from anygpt.errors import AnyGPTError
from anygpt.media_io import atomic_path
from anygpt.nn.query_former import QueryTokenizer, QueryTokenizerConfig
from anygpt.train.core import LOG, RunOptions, TrainingRun, add_run_args, lr_at, set_threads
from anygpt.train.recipes import CorpusError, add_corpus_arg, command_line, train_or_export

# the decoder's parameters (everything after the codebook), the ones --train decoder trains
DECODER = ("code_pos", "code_layers", "code_norm", "pixel_queries", "decoder", "decoder_norm", "to_pixels", "upsampler",
           "refine")
LOGGED = ("loss", "l1", "l2", "grad", "edge", "attr", "vq", "perplexity", "contrastive")


# ---------------------------------------------------------------- data
def load_split(data_dir: str | Path, splits: tuple[str, ...], size: int = 64,
               kinds: tuple[str, ...] | None = None) -> dict:
    """Images of DATA/images/manifest.jsonl in `splits` -> {"images": uint8 [N, 3, S, S],
    "captions": [...], "records": [...]} (records are the manifest lines)."""
    from anygpt.media_io import load_image

    corpus = Path(data_dir) / "images"
    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        raise CorpusError(
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
    """all-MiniLM-L6-v2 embeddings [N, 384] (unit norm), cached (safetensors) by the captions' hash."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    key = hashlib.sha256("\n".join(captions).encode("utf-8")).hexdigest()
    if cache is not None and cache.is_file():
        with safe_open(str(cache), "pt") as f:
            if (f.metadata() or {}).get("key") == key:
                return f.get_tensor("emb")
    from anygpt.nn.minilm import minilm

    uniq = sorted(set(captions))
    emb = minilm().encode(uniq, batch_size=128, convert_to_tensor=True, normalize_embeddings=True,
                          show_progress_bar=False).float().cpu()
    index = {c: i for i, c in enumerate(uniq)}
    out = emb[torch.tensor([index[c] for c in captions], dtype=torch.long)].contiguous()
    if cache is not None:
        with atomic_path(cache) as tmp:
            save_file({"emb": out}, str(tmp), metadata={"key": key})
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


@dataclass
class Recipe:
    """The training choices of one run (the flags of the same names).

    vq_warmup: steps trained without the codebook (continuous codes); then the codebook is
    k-means initialised on the query outputs of 16 batches and quantization starts.
    trainable "decoder": encoder, query former and codebook frozen (codes fixed), only the
    decoder learns. object_weight, l2_weight, edge_weight: see QueryTokenizer.forward.
    attr_weight: weight of the CellAttributeHead loss on the code vectors (needs cell labels
    from scene_cell_labels; the head is trained and checkpointed with the model, not exported)."""

    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    bf16: bool = True
    contrastive_weight: float = 0.1
    vq_warmup: int = 0
    trainable: str = "all"
    object_weight: float = 0.0
    l2_weight: float = 1.0
    edge_weight: float = 0.0
    attr_weight: float = 0.0

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "Recipe":
        return cls(**{f.name: getattr(a, f.name) for f in fields(cls)})


class ImageTrainer:
    """The recipe on the training core: the model (and the attribute head), the optimizer and
    the step; `fit` trains on uint8 images [N, 3, S, S] (+ caption embeddings [N, 384])."""

    def __init__(self, model: QueryTokenizer, options: RunOptions, recipe: Recipe, config: dict | None = None):
        if recipe.trainable not in ("all", "decoder"):
            raise ValueError(f"trainable must be 'all' or 'decoder', not {recipe.trainable!r}")
        if recipe.trainable == "decoder":
            for name, p in model.named_parameters():
                p.requires_grad_(name.split(".")[0] in DECODER)
            recipe = Recipe(**{**asdict(recipe), "contrastive_weight": 0.0})
        self.model, self.recipe = model, recipe
        torch.manual_seed(options.seed)
        modules: dict[str, torch.nn.Module] = {"model": model}
        self.head = None
        if recipe.attr_weight > 0:
            self.head = modules["attr_head"] = CellAttributeHead(model.cfg.num_queries, model.cfg.dim)
        decay, no_decay = [], []
        for module in modules.values():
            for name, p in module.named_parameters():
                if p.requires_grad:
                    (no_decay if p.dim() < 2 or name.endswith(("pos", "tokens", "queries")) else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=recipe.lr, betas=(0.9, 0.99))
        config = {"model": asdict(model.cfg), "recipe": asdict(recipe), "steps": options.steps, "seed": options.seed,
                  **(config or {})}
        self.run = TrainingRun(options, modules=modules, optimizer=opt, config=config, desc="image tokenizer",
                               lr=lambda s: lr_at(s, options.steps, recipe.lr, recipe.warmup, floor=0.05))

    def fit(self, images: torch.Tensor, text_emb: torch.Tensor | None, cell_labels: torch.Tensor | None = None) -> None:
        """Train from the run's current step to its last (call self.run.resume() first to continue
        from the newest checkpoint of the run folder); cell_labels: LongTensor [N, 9, 3]."""
        r, model, run, seed = self.recipe, self.model, self.run, self.run.o.seed
        if self.head is not None and cell_labels is None:
            raise ValueError("attr_weight > 0 needs cell_labels (scene_cell_labels of the training records)")
        n = len(images)
        run.data_state = {"train_images": n}
        for step in run.steps():
            if r.trainable == "decoder":
                model.quantizer.eval()  # codebook frozen: no EMA updates or restarts
            if r.vq_warmup and step == r.vq_warmup:
                sample = torch.cat([_batch_indices(step + i, r.batch, n, seed + 1) for i in range(16)])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
                    model.init_codebook(images[sample].float() / 255.0)
            idx = _batch_indices(step, r.batch, n, seed)
            x = images[idx].float() / 255.0
            t = text_emb[idx] if text_emb is not None else None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r.bf16):
                res = model(x, t, contrastive_weight=r.contrastive_weight, quantize=step >= r.vq_warmup,
                            object_weight=r.object_weight, l2_weight=r.l2_weight, edge_weight=r.edge_weight)
                if self.head is not None:
                    res["attr"] = self.head.loss(res["z"], cell_labels[idx])
                    res["loss"] = res["loss"] + r.attr_weight * res["attr"]
            run.optimise(res["loss"])
            run.record(**{k: float(res[k].detach()) for k in LOGGED if res.get(k) is not None})
        model.eval()


def export(model: QueryTokenizer, folder: Path, meta: dict | None = None, half: bool = False) -> Path:
    """Write folder/model.safetensors (float32, or float16 with half=True: the loader casts back
    to float32; the EMA sums are left out, the loader rebuilds them) + config.json (the
    QueryTokenizerConfig) + training.json (meta, if given)."""
    from anygpt.nn.weights import save_weights

    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to(dtype) if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items() if k != "quantizer.embed_sum"}
    files = {"training.json": meta} if meta is not None else {}
    return save_weights(folder, state, dict(sorted(asdict(model.cfg).items())), files=files)


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
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anygpt train image-tokenizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arg(p, "images/manifest.jsonl")
    p.add_argument("--batch", type=int, default=32, help="images per step (default: 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: 2e-3)")
    p.add_argument("--warmup", type=int, default=100, help="warmup steps (default: 100)")
    p.add_argument("--extra-scenes", type=int, default=0,
                   help="also train on this many freshly rendered scenes (never a held-out pair)")
    p.add_argument("--contrastive-weight", type=float, default=0.1)
    p.add_argument("--vq-warmup", type=int, default=400, help="steps before the codebook is switched on (0 with --init)")
    p.add_argument("--init", default=None, help="start from an exported folder (model.safetensors + config.json)")
    p.add_argument("--train", dest="trainable", choices=("all", "decoder"), default="all",
                   help="decoder: fine-tune only the decoder on fixed codes")
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="extra L1/L2 weight on pixels that differ from the background")
    p.add_argument("--l2-weight", type=float, default=1.0,
                   help="weight of the squared-error term (L1 alone settles on the background median)")
    p.add_argument("--edge-weight", type=float, default=0.0,
                   help="weight of an image-gradient L1 term on the objects and their outline")
    p.add_argument("--attr-weight", type=float, default=0.0,
                   help="weight of a training-only head reading each scene cell's shape/colour/size from the codes")
    p.add_argument("--config", default=None,
                   help="QueryTokenizerConfig overrides: a JSON file, or inline JSON starting with '{'")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (default: on)")
    p.add_argument("--fp16", action="store_true", help="export the weights in float16 (half the size)")
    add_run_args(p, out="runs/image-tokenizer", steps=2400, save_every=100, log_every=25,
                 ship=IMAGE_TOKENIZER_TINY_DIR,
                 export_help="after training, export model.safetensors + config.json + training.json here")
    return p


def build_model(a: argparse.Namespace) -> QueryTokenizer:
    """--init's exported model, or a new one from --config overrides."""
    if a.init:
        from anygpt.modalities.image_tokenizers import CompactImageTokenizer

        return CompactImageTokenizer.from_folder(a.init).model
    try:
        text = a.config if not a.config or a.config.lstrip().startswith("{") else Path(a.config).read_text()
        cfg = QueryTokenizerConfig.from_dict({**json.loads(text or "{}"), "seed": a.seed})
    except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise AnyGPTError(f"--config {a.config}: not QueryTokenizerConfig overrides ({e})") from None
    return QueryTokenizer(cfg)


def training_data(a: argparse.Namespace, size: int) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
    """-> (uint8 images [N, 3, S, S], caption embeddings [N, 384] or None, manifest records)."""
    data = load_split(a.corpus, ("train",), size=size)
    images, captions, records = data["images"], data["captions"], data["records"]
    if a.extra_scenes:
        extra = render_scenes(a.extra_scenes, a.seed, size)
        images = torch.cat([images, extra["images"]])
        captions = captions + extra["captions"]
        records = records + extra["records"]
    if not len(images):
        raise CorpusError(f"{Path(a.corpus) / 'images' / 'manifest.jsonl'}: no images with split 'train'")
    print(f"training images: {len(images)}", file=sys.stderr)
    text_emb = embed_captions(captions, Path(a.out) / "captions.safetensors") if a.contrastive_weight > 0 else None
    return images, text_emb, records


def last_logged(out: Path) -> dict | None:
    """The last training row of OUT/log.jsonl."""
    path = out / LOG
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    rows = [r for r in rows if not r.get("eval")]
    return rows[-1] if rows else None


def main(argv: list[str] | None = None) -> int:
    t_start = time.time()
    a = build_parser().parse_args(argv)
    set_threads(a.threads)
    if a.init:
        a.vq_warmup = 0
    model = build_model(a)
    options = RunOptions.from_args(a)
    trainer = ImageTrainer(model, options, Recipe.from_args(a), config={
        "corpus": str(a.corpus), "init": a.init, "extra_scenes": a.extra_scenes})
    run = trainer.run

    def train() -> None:
        images, text_emb, records = training_data(a, model.cfg.image_size)
        trainer.fit(images, text_emb, scene_cell_labels(records) if a.attr_weight > 0 else None)

    def export_run(folder: Path) -> Path:
        val = load_split(a.corpus, ("val",), size=model.cfg.image_size)
        metrics = evaluate_recon(model, val["images"]) if len(val["images"]) else {}
        meta = {"command": command_line("image-tokenizer", argv), "steps": a.steps, "vq_warmup": a.vq_warmup,
                "init": a.init, "train": a.trainable, "object_weight": a.object_weight, "l2_weight": a.l2_weight,
                "edge_weight": a.edge_weight, "attr_weight": a.attr_weight, "steps_done": run.step,
                "batch": a.batch, "lr": a.lr, "seed": a.seed, "train_images": run.data_state.get("train_images"),
                "extra_scenes": a.extra_scenes, "train_seconds": run.elapsed,
                "wall_seconds_this_invocation": time.time() - t_start, "final": last_logged(run.out), "val": metrics}
        print(f"val {metrics}", file=sys.stderr)
        return export(model, folder, meta, half=a.fp16)

    train_or_export(run, options, train, export_run)
    return 0


if __name__ == "__main__":  # `anygpt train NAME` is the command; this runs the module alone
    raise SystemExit(main(sys.argv[1:]))
