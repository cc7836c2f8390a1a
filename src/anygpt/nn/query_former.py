"""A compact SEED-style image tokenizer: a fixed number of semantic codes per image.

SEED (arXiv 2307.08041) reads ViT patch features with a causal Q-Former (learned queries,
each seeing only the queries before it), projects each query output to a small vector and
quantizes it, so an image becomes N codes read left to right like text. This module is the
CPU-sized version trained here on 64x64 images:

    image [B, 3, 64, 64]
      -> patch encoder: conv patchify (8x8 patches) + transformer blocks   -> [B, 64, D]
      -> causal query former: N learned queries; each layer = causal self-attention among the
         queries, cross-attention to the patch features, MLP               -> [B, N, D]
      -> VQ (anygpt.nn.quantize.VectorQuantizer, factorised: D -> codebook_dim lookup,
         cosine distance, EMA codebook, dead-code restarts)                 -> codes [B, N]
      -> decoder: code vectors + positions -> transformer over the N codes; a grid of
         (H/8)*(W/8) learned pixel-patch queries cross-attends to them; then either linear to
         8x8x3 pixels per patch + a small conv refinement, or (cfg.upsample_channels, shipped)
         a conv upsampler x2 x2 x2 to full resolution                        -> [B, 3, 64, 64]

Locality prior (cfg.locality, shipped): each query has an anchor point on a 4 x 8 grid over the
image; both cross-attentions (query -> patches in the encoder, pixel patch -> codes in the
decoder) add -w_h * squared anchor-to-patch distance to the logits of head h (w_h learned; a
head with w_h = 0 is global). Without it the queries and pixel queries must discover where
things are from scratch: the 2400-step CPU run learned only the background (its reconstructions
scored exactly the PSNR of a flat background image, 18.7 dB, and linear probes from its codes
to per-cell shape/colour were below the majority baseline).

Local codes (cfg.encoder = "grid"): the query former is replaced by a grid of rows x cols
windows (anchor_grid(N): 36 -> 6 x 6, windows of ceil(S / rows) pixels, evenly spread so the
last ends at the border), and each code is read from its own window alone by one small conv
net shared by all windows (no position input). So a code depends only on the pixels under it:
changing one object moves the codes of its windows and no others, and the same content gets
the same code wherever it is, which is what lets a small LM learn "red circle" once. A 6 x 6
grid puts exactly 2 x 2 codes on each cell of the drawn scenes' 3 x 3 layout. The decoder is
the same as the query former's (it may read all codes; only the encoder must be local).

Semantics: the mean of the N quantized code vectors is projected to the text-embedding space
and trained with a symmetric InfoNCE loss against frozen all-MiniLM-L6-v2 caption embeddings
(SEED aligns its causal embeddings with CLIP text features the same way).

Shapes: images FloatTensor [B, 3, H, W] in [0, 1]; codes LongTensor [B, N].
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anygpt.nn.quantize import VectorQuantizer


@dataclass
class QueryTokenizerConfig:
    """Sizes of the compact tokenizer. The defaults are the first (background-only) version and
    keep its folders loading; the shipped config.json adds `locality` and `upsample_channels`."""

    image_size: int = 64
    patch_size: int = 8
    dim: int = 128
    heads: int = 4
    mlp_ratio: float = 2.0
    encoder_layers: int = 1
    query_layers: int = 2
    num_queries: int = 32
    codebook_size: int = 1024
    codebook_dim: int = 32
    decoder_code_layers: int = 1
    decoder_layers: int = 2
    refine_channels: int = 16
    # locality prior: queries get anchor points on a rows x cols grid over the image; the
    # cross-attentions (queries -> patches, pixel queries -> codes) add -w_h * squared distance
    # per head (w_h learned, initialised from `locality`; a 0 makes a head global). () = off.
    locality: tuple[float, ...] = ()
    # conv upsampler decoder: the pixel-patch tokens form a [D, S/p, S/p] map, upsampled x2 per
    # entry (nearest + 3x3 conv to that many channels) up to S, then a 3x3 conv to RGB; replaces
    # the per-patch linear output. () = the linear patch output.
    upsample_channels: tuple[int, ...] = ()
    # "query": the causal query former (global codes); "grid": each code reads its own window
    # of an anchor_grid(num_queries) grid through `grid_channels` conv layers (local codes)
    encoder: str = "query"
    grid_channels: tuple[int, ...] = (32, 64)
    text_dim: int = 384  # all-MiniLM-L6-v2
    commitment_weight: float = 0.25
    seed: int = 0

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "QueryTokenizerConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def from_json_file(cls, path: str | Path) -> "QueryTokenizerConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class Attention(nn.Module):
    """Multi-head attention, self or cross (kv from `context`), optional causal mask."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """bias: additive attention bias [heads, n, n_ctx] (not with causal)."""
        b, n, d = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block: [causal] self-attention, optional cross-attention, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool = False, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = cross
        if cross:
            self.norm_x = nn.LayerNorm(dim)
            self.norm_ctx = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """bias: additive cross-attention bias [heads, n, n_ctx] (see QueryTokenizer.locality_bias)."""
        x = x + self.attn(self.norm1(x), causal=self.causal)
        if self.cross:
            x = x + self.cross_attn(self.norm_x(x), self.norm_ctx(context), bias=bias)
        return x + self.mlp(self.norm2(x))


def grid_points(rows: int, cols: int) -> torch.Tensor:
    """Centres of a rows x cols grid over the unit square, raster order: [rows * cols, 2] (y, x)."""
    y = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows
    x = (torch.arange(cols, dtype=torch.float32) + 0.5) / cols
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(-1, 2)


def anchor_grid(n: int) -> tuple[int, int]:
    """The most square rows x cols = n with rows <= cols (32 -> 4 x 8)."""
    rows = max(r for r in range(1, int(n ** 0.5) + 1) if n % r == 0)
    return rows, n // rows


def window_starts(size: int, window: int, n: int) -> list[int]:
    """n windows of `window` pixels spread evenly over `size`, the first at 0 and the last ending
    at `size` (64, 11, 6 -> [0, 11, 21, 32, 42, 53])."""
    if n == 1:
        return [0]
    return [round(i * (size - window) / (n - 1)) for i in range(n)]


class ChannelsLastGELU(nn.Module):
    """GELU (exact) that runs a channels-last [N, C, H, W] tensor as the contiguous [N, H, W, C]
    tensor its memory is: torch's CPU kernel is about 1.8x faster on that view, and this GELU was
    a third of the grid encoder's time (benchmarks/bench_image_tokenizer.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(x)


class WindowEncoder(nn.Module):
    """Local encoder: images [B, 3, S, S] -> one feature per grid window [B, rows * cols, D],
    raster order. Every window goes through the same conv net (zero padding inside the window),
    so a feature sees only its window's pixels and not where the window is."""

    def __init__(self, cfg: QueryTokenizerConfig) -> None:
        super().__init__()
        self.rows, self.cols = anchor_grid(cfg.num_queries)
        self.window = -(-cfg.image_size // min(self.rows, self.cols))
        layers, prev, side = [], 3, self.window
        for i, ch in enumerate(cfg.grid_channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(prev, ch, 3, stride=stride, padding=1), ChannelsLastGELU()]
            prev, side = ch, (side - 1) // stride + 1
        self.convs = nn.Sequential(*layers)
        self.side = side
        self.proj = nn.Linear(prev * side * side, cfg.dim)  # input in (channel, row, column) order
        self.norm = nn.LayerNorm(cfg.dim)
        self.ys = window_starts(cfg.image_size, self.window, self.rows)
        self.xs = window_starts(cfg.image_size, self.window, self.cols)

    def windows(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, S, S] -> windows [B * rows * cols, C, w, w] (raster order per image)."""
        w = self.window
        crops = [images[:, :, y:y + w, x:x + w] for y in self.ys for x in self.xs]
        # channels-last: the 3-channel first convolution runs 2x faster on CPU in that layout
        return torch.stack(crops, dim=1).reshape(-1, images.shape[1], w, w).contiguous(memory_format=torch.channels_last)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] in [0, 1] -> conv features [B * rows * cols, C, side, side], channels-last.

        Inference on CPU runs each convolution with its GELU fused in (oneDNN's post-op), in the
        autocast dtype: the features are written once instead of three times, and this net is
        bound by memory traffic more than arithmetic. The RGB input is zero-padded to 8 channels,
        for which oneDNN has a 1.5x faster kernel (the zeros add nothing). With the blockwise
        nearest-code search (quantize.row_argmax) the grid tokenizer went from 719 to about 1,000
        images/s on 1 thread, with the same codes on 3,000 scenes (benchmarks/bench_image_tokenizer.py).
        """
        x = images * 2 - 1
        if torch.is_grad_enabled() or x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return self.convs(self.windows(x))
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        pad = -x.shape[1] % 8
        h = self.windows(F.pad(x.to(dtype), (0, 0, 0, 0, 0, pad)))
        for i, conv in enumerate(self.convs[::2]):
            weight = F.pad(conv.weight.to(dtype), (0, 0, 0, 0, 0, pad if i == 0 else 0))
            h = torch.ops.mkldnn._convolution_pointwise(
                h, weight, conv.bias.to(dtype), list(conv.padding), list(conv.stride), list(conv.dilation),
                conv.groups, "gelu", [], "none")
        return h

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        h = self.features(images)
        # the projection reads the features in their memory order (row, column, channel) with its
        # weight's columns reordered to match: no copy of the features
        weight = self.proj.weight.view(-1, h.shape[1], self.side, self.side).permute(0, 2, 3, 1).flatten(1)
        h = F.linear(h.permute(0, 2, 3, 1).flatten(1), weight, self.proj.bias)
        return self.norm(h).view(b, self.rows * self.cols, -1)


class QueryTokenizer(nn.Module):
    """Encoder + causal query former + VQ + decoder (see the module docstring)."""

    def __init__(self, cfg: QueryTokenizerConfig) -> None:
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if cfg.encoder not in ("query", "grid"):
            raise ValueError(f"encoder must be 'query' or 'grid', not {cfg.encoder!r}")
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        d, p, n_patch = cfg.dim, cfg.patch_size, cfg.grid ** 2
        self.window_encoder = WindowEncoder(cfg) if cfg.encoder == "grid" else None
        if self.window_encoder is None:
            # encoder: two-stage conv patchify (p/2 then 2) keeps a little more local detail than one linear patch
            self.patch_embed = nn.Sequential(
                nn.Conv2d(3, d // 2, kernel_size=p // 2, stride=p // 2), nn.GELU(),
                nn.Conv2d(d // 2, d, kernel_size=2, stride=2),
            )
            self.patch_pos = nn.Parameter(torch.randn(1, n_patch, d, generator=g) * 0.02)
            self.encoder = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.encoder_layers))
            self.encoder_norm = nn.LayerNorm(d)
            # causal query former
            self.query_tokens = nn.Parameter(torch.randn(1, cfg.num_queries, d, generator=g) * 0.02)
            self.query_layers = nn.ModuleList(
                Block(d, cfg.heads, cfg.mlp_ratio, cross=True, causal=True) for _ in range(cfg.query_layers))
            self.query_norm = nn.LayerNorm(d)
        self.quantizer = VectorQuantizer(
            cfg.codebook_size, d, codebook_dim=cfg.codebook_dim, distance="cosine",
            commitment_weight=cfg.commitment_weight, ema=True, dead_code_threshold=0.1,
            kmeans_init=True, seed=cfg.seed)
        # decoder
        self.code_pos = nn.Parameter(torch.randn(1, cfg.num_queries, d, generator=g) * 0.02)
        self.code_layers = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.decoder_code_layers))
        self.code_norm = nn.LayerNorm(d)
        self.pixel_queries = nn.Parameter(torch.randn(1, n_patch, d, generator=g) * 0.02)
        self.decoder = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cross=True) for _ in range(cfg.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        if cfg.upsample_channels:
            if 2 ** len(cfg.upsample_channels) != p:
                raise ValueError(f"upsample_channels needs log2(patch_size) = {p.bit_length() - 1} entries")
            layers, prev = [], d
            for ch in cfg.upsample_channels:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(prev, ch, 3, padding=1), nn.GELU()]
                prev = ch
            self.upsampler = nn.Sequential(*layers, nn.Conv2d(prev, 3, 3, padding=1))
            self.to_pixels = None
        else:
            self.upsampler = None
            self.to_pixels = nn.Linear(d, p * p * 3)
        if cfg.locality:
            if len(cfg.locality) != cfg.heads:
                raise ValueError(f"locality needs one weight per head ({cfg.heads})")
            self.locality_weight = nn.Parameter(torch.tensor(cfg.locality, dtype=torch.float32))
            anchors = grid_points(*anchor_grid(cfg.num_queries))
            patches = grid_points(cfg.grid, cfg.grid)
            self.register_buffer("query_patch_dist", torch.cdist(anchors, patches) ** 2, persistent=False)
        else:
            self.locality_weight = None
        c = cfg.refine_channels
        self.refine = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, 3, 3, padding=1)) if c else None
        # semantic head: mean code vector -> text space
        self.text_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.text_dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07), CLIP's start

    # ------------------------------------------------------------------ stages
    def locality_bias(self) -> torch.Tensor | None:
        """-w_h * squared distance (image units) query anchor -> patch centre: [heads, N, g*g]
        (None without cfg.locality). The decoder uses its transpose (pixel patch -> code)."""
        if self.locality_weight is None:
            return None
        return -F.relu(self.locality_weight)[:, None, None] * self.query_patch_dist

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] in [0, 1] -> patch features [B, (S/p)^2, D]."""
        x = self.patch_embed(images * 2 - 1).flatten(2).transpose(1, 2) + self.patch_pos
        for blk in self.encoder:
            x = blk(x)
        return self.encoder_norm(x)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images -> causal query outputs (or, encoder "grid", window features) [B, N, D] before
        quantization."""
        if self.window_encoder is not None:
            return self.window_encoder(images)
        feats = self.patch_features(images)
        q = self.query_tokens.expand(images.shape[0], -1, -1)
        bias = self.locality_bias()
        for blk in self.query_layers:
            q = blk(q, feats, bias)
        return self.query_norm(q)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images FloatTensor [B, 3, S, S] in [0, 1] -> codes LongTensor [B, N]."""
        return self.quantizer.encode(self.query(images).transpose(1, 2))

    def code_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor [B, N] -> code vectors [B, N, D]."""
        return self.quantizer.decode(codes).transpose(1, 2)

    def decode_vectors(self, z: torch.Tensor) -> torch.Tensor:
        """quantized code vectors [B, N, D] -> images [B, 3, S, S] in [0, 1]."""
        cfg = self.cfg
        h = z + self.code_pos
        for blk in self.code_layers:
            h = blk(h)
        h = self.code_norm(h)
        x = self.pixel_queries.expand(z.shape[0], -1, -1)
        bias = self.locality_bias()
        bias = bias.transpose(1, 2) if bias is not None else None
        for blk in self.decoder:
            x = blk(x, h, bias)
        x = self.decoder_norm(x)
        b, g, p = z.shape[0], cfg.grid, cfg.patch_size
        if self.upsampler is not None:
            img = self.upsampler(x.transpose(1, 2).reshape(b, -1, g, g))
        else:
            x = self.to_pixels(x)  # [B, g*g, p*p*3]
            img = x.view(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)
        if self.refine is not None:
            img = img + self.refine(img)
        return torch.sigmoid(img * 4.0)  # logits scaled so a zero-init output is mid-grey

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor [B, N] -> images FloatTensor [B, 3, S, S] in [0, 1]."""
        return self.decode_vectors(self.code_vectors(codes)).float()

    def semantic_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """code vectors [B, N, D] -> unit vectors [B, text_dim] in the caption-embedding space."""
        return F.normalize(self.text_proj(z.mean(dim=1)).float(), dim=-1)

    # ------------------------------------------------------------------ training
    def continuous(self, q: torch.Tensor) -> torch.Tensor:
        """query outputs [B, N, D] -> the same path as quantization without the codebook lookup
        (project to codebook_dim, unit-normalise, project back): [B, N, D]. Used while the
        quantizer warms up."""
        vq = self.quantizer
        with torch.autocast(device_type=q.device.type, enabled=False):
            rows = vq._prep(q.reshape(-1, q.shape[-1]))
            out = vq.project_out(rows) if vq.project_out is not None else rows
        return out.view(q.shape[0], q.shape[1], -1)

    @torch.no_grad()
    def init_codebook(self, images: torch.Tensor) -> None:
        """k-means initialisation of the codebook on the query outputs of `images` [B, 3, S, S]."""
        vq = self.quantizer
        q = self.query(images).float()
        with torch.autocast(device_type=q.device.type, enabled=False):
            vq._kmeans_init(vq._prep(q.reshape(-1, q.shape[-1])))
        if vq.ema:
            vq.cluster_size.fill_(1.0)
            vq.embed_sum.copy_(vq.codebook.data)

    def forward(self, images: torch.Tensor, text_emb: torch.Tensor | None = None,
                contrastive_weight: float = 0.1, grad_weight: float = 0.5,
                quantize: bool = True, object_weight: float = 0.0, l2_weight: float = 1.0,
                edge_weight: float = 0.0) -> dict[str, torch.Tensor]:
        """One training pass. images [B, 3, S, S]; text_emb [B, text_dim] (MiniLM) or None.
        quantize=False bypasses the codebook (warm-up: the encoder first learns diverse features,
        then the codebook is initialised on them by k-means; this avoids codebook collapse).

        object_weight: pixels that differ from the image's background (median border colour)
        weigh 1 + object_weight in the L1 and L2 terms, so small objects are not traded for background.
        l2_weight: weight of the (squared-error) L2 term. L1 alone predicts the per-pixel median,
        which is the background wherever the codes leave an object's place uncertain, and so
        gives the encoder almost no signal to carry small objects; L2 predicts the mean and does.
        edge_weight: weight of an extra image-gradient L1 term restricted to the objects and a
        1-pixel ring around them (the foreground mask above, dilated), normalised by that area:
        outlines (corners, points of stars) are a few pixels of a 10-pixel object, too few for
        the whole-image terms to notice a round blob.

        Returns the losses (key `loss` is the total), the reconstruction `recon` [B, 3, S, S],
        the codes [B, N] (quantize=True), the code vectors `z` [B, N, D] the decoder read (with
        their graph, for auxiliary heads) and the code-usage perplexity.
        """
        q = self.query(images)
        if quantize:
            vq = self.quantizer(q.transpose(1, 2))
            z = vq.quantized.transpose(1, 2)
            vq_loss, ppl, codes = vq.loss, vq.perplexity, vq.codes
        else:
            z = self.continuous(q)
            vq_loss, ppl, codes = q.new_zeros((), dtype=torch.float32), q.new_zeros((), dtype=torch.float32), None
        recon = self.decode_vectors(z).float()
        target = images.float()
        fg = None
        if object_weight > 0 or edge_weight > 0:
            border = torch.cat([target[..., 0, :], target[..., -1, :], target[..., :, 0], target[..., :, -1]], dim=-1)
            bg = border.median(dim=-1).values[..., None, None]  # [B, 3, 1, 1]
            fg = ((target - bg).abs().sum(1, keepdim=True) > 0.1).float()
        if object_weight > 0:
            w = 1 + object_weight * fg
            l1 = ((recon - target).abs() * w).mean() / w.mean()
            l2 = ((recon - target) ** 2 * w).mean() / w.mean()
        else:
            l1 = (recon - target).abs().mean()
            l2 = F.mse_loss(recon, target)
        # image-gradient loss: keeps edges (shape outlines) sharp
        gx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
        gy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
        grad = (gx(recon) - gx(target)).abs().mean() + (gy(recon) - gy(target)).abs().mean()
        loss = l1 + l2_weight * l2 + grad_weight * grad + vq_loss
        out = {"l1": l1.detach(), "l2": l2.detach(), "grad": grad.detach(), "vq": vq_loss.detach(),
               "perplexity": ppl.detach(), "codes": codes, "recon": recon.detach(), "z": z}
        if edge_weight > 0:
            ring = F.max_pool2d(fg, 3, stride=1, padding=1)  # objects + 1 pixel around them
            ex = ((gx(recon) - gx(target)).abs() * ring[..., :, 1:]).sum() / (3 * ring[..., :, 1:].sum()).clamp(min=1)
            ey = ((gy(recon) - gy(target)).abs() * ring[..., 1:, :]).sum() / (3 * ring[..., 1:, :].sum()).clamp(min=1)
            out["edge"] = (ex + ey).detach()
            loss = loss + edge_weight * (ex + ey)
        if text_emb is not None and contrastive_weight > 0:
            img = self.semantic_embedding(z)
            txt = F.normalize(text_emb.float(), dim=-1)
            logits = self.logit_scale.clamp(max=4.6052).exp() * img @ txt.t()
            labels = torch.arange(len(img), device=img.device)
            clip = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
            loss = loss + contrastive_weight * clip
            out["contrastive"] = clip.detach()
        out["loss"] = loss
        return out
