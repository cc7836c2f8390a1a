"""SEED-2, the released AnyGPT image tokenizer (arXiv 2310.01218), written from its published shapes.

Parameter names follow the public checkpoint `seed_quantizer.pt` (a flat state dict of
the class `Blip2QformerQuantizer` in the SEED / AnyGPT code), so `load_state_dict(strict=True)`
reads it. Our own code; the layout:

    visual_encoder.*   EVA-ViT-g/14: patch_embed.proj (conv 14x14, 3->1408), cls_token,
                       pos_embed [1, 257, 1408], blocks.{0..38}.{norm1, attn.qkv (no bias),
                       attn.q_bias, attn.v_bias, attn.proj, norm2, mlp.fc1 (->6144), mlp.fc2};
                       no final norm (the last block's output is used, CLS token included)
    ln_vision          LayerNorm(1408)
    query_tokens       [1, 32, 768]
    Qformer.bert.embeddings.LayerNorm
    Qformer.bert.encoder.layer.{0..11}.
        attention.self.{query,key,value}, attention.output.{dense,LayerNorm}
        crossattention.self.{query, key (1408->768), value}, crossattention.output.*  (even layers)
        intermediate_query.dense (768->3072), output_query.{dense,LayerNorm}
                       BERT-base, post-LN; self-attention over the 32 queries is causal
    encode_task_layer  Linear(768,768) Tanh Linear(768,32)
    quantize.embedding [8192, 32]     nearest code by squared L2
    decode_task_layer  Linear(32,32) Tanh Linear(32,768)
    pos_embed, blocks.{0..3}          (reconstruction of the causal embeddings; kept for loading)
    pos_embed_image, blocks_image.{0..3}  ViT blocks (768, 12 heads, qkv with bias)
    image_down         Linear(768,256) ReLU Linear(256,128) ReLU Linear(128,32), no biases
    distill_image_proj Linear(32*32=1024, 1024)   -> the unCLIP image embedding

Tokenize: image 224x224 (bicubic, CLIP mean/std) -> ViT -> ln_vision -> Q-Former(32 causal
queries) -> encode_task_layer -> nearest code: LongTensor [B, 32] in 0..8191.
De-tokenize: codes -> quantize.embedding -> decode_task_layer -> + pos_embed_image ->
blocks_image -> image_down -> flatten -> distill_image_proj: FloatTensor [B, 1024], the
`image_embeds` of Stable Diffusion 2.1 unCLIP (StableUnCLIPImg2ImgPipeline, noise_level 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Seed2Config:
    """Sizes of SEED-2. Defaults are the released model; tests shrink depths and widths."""

    image_size: int = 224
    patch_size: int = 14
    vit_dim: int = 1408
    vit_depth: int = 39
    vit_heads: int = 16
    vit_mlp_dim: int = 6144  # int(1408 * 4.3637)
    qformer_dim: int = 768
    qformer_layers: int = 12
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    cross_attention_freq: int = 2
    num_query_tokens: int = 32
    codebook_size: int = 8192
    codebook_dim: int = 32
    decode_depth: int = 4
    decode_heads: int = 12
    image_down_dims: tuple[int, int, int] = (256, 128, 32)
    image_embed_dim: int = 1024

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# ---------------------------------------------------------------- EVA ViT-g
class EvaAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EvaBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EvaAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class EvaViT(nn.Module):
    """EVA-ViT-g/14 as used by BLIP-2 and SEED: returns all tokens (CLS first), no final norm."""

    def __init__(self, cfg: Seed2Config) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(cfg.patch_size, cfg.vit_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.vit_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, cfg.vit_dim))
        self.blocks = nn.ModuleList(EvaBlock(cfg.vit_dim, cfg.vit_heads, cfg.vit_mlp_dim) for _ in range(cfg.vit_depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return x


# ---------------------------------------------------------------- causal Q-Former (BERT-base)
class _BertSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(kv_dim, dim)
        self.value = nn.Linear(kv_dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        ctx = x if context is None else context
        b, n, d = x.shape
        q = self.query(x).view(b, n, self.heads, -1).transpose(1, 2)
        k = self.key(ctx).view(b, ctx.shape[1], self.heads, -1).transpose(1, 2)
        v = self.value(ctx).view(b, ctx.shape[1], self.heads, -1).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(b, n, d)


class _BertOutput(nn.Module):
    """dense -> (+ residual) -> LayerNorm (BERT's post-LN)."""

    def __init__(self, d_in: int, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class _BertAttention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int) -> None:
        super().__init__()
        self.self = _BertSelfAttention(dim, heads, kv_dim)
        self.output = _BertOutput(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        return self.output(self.self(x, context, causal), x)


class _BertIntermediate(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class QFormerLayer(nn.Module):
    """One Q-Former layer for query tokens only (the text branch is not in the checkpoint)."""

    def __init__(self, cfg: Seed2Config, index: int) -> None:
        super().__init__()
        d = cfg.qformer_dim
        self.attention = _BertAttention(d, cfg.qformer_heads, d)
        self.has_cross_attention = index % cfg.cross_attention_freq == 0
        if self.has_cross_attention:
            self.crossattention = _BertAttention(d, cfg.qformer_heads, cfg.vit_dim)
        self.intermediate_query = _BertIntermediate(d, cfg.qformer_intermediate)
        self.output_query = _BertOutput(cfg.qformer_intermediate, d)

    def forward(self, q: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q = self.attention(q, causal=True)
        if self.has_cross_attention:
            q = self.crossattention(q, image)
        return self.output_query(self.intermediate_query(q), q)


class _BertEmbeddings(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)


class _BertEncoder(nn.Module):
    def __init__(self, cfg: Seed2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(QFormerLayer(cfg, i) for i in range(cfg.qformer_layers))


class _Bert(nn.Module):
    def __init__(self, cfg: Seed2Config) -> None:
        super().__init__()
        self.embeddings = _BertEmbeddings(cfg.qformer_dim)
        self.encoder = _BertEncoder(cfg)

    def forward(self, query: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q = self.embeddings.LayerNorm(query)
        for layer in self.encoder.layer:
            q = layer(q, image)
        return q


class QFormer(nn.Module):
    def __init__(self, cfg: Seed2Config) -> None:
        super().__init__()
        self.bert = _Bert(cfg)


# ---------------------------------------------------------------- decoder side
class ViTBlock(nn.Module):
    """timm-style block (qkv with bias), LayerNorm eps 1e-6."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, dim * 3)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.attn.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        x = x + self.attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class _Codebook(nn.Module):
    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n, d)


def _tanh_mlp(d_in: int, d_mid: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_mid), nn.Tanh(), nn.Linear(d_mid, d_out))


class Seed2Quantizer(nn.Module):
    """The released SEED-2 tokenizer with key names of seed_quantizer.pt.

    encode(pixels [B, 3, 224, 224], CLIP-normalised) -> codes LongTensor [B, 32]
    decode_embedding(codes [B, 32]) -> FloatTensor [B, 1024] (unCLIP image embedding)
    """

    def __init__(self, cfg: Seed2Config = Seed2Config()) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.qformer_dim
        self.visual_encoder = EvaViT(cfg)
        self.ln_vision = nn.LayerNorm(cfg.vit_dim)
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, d))
        self.Qformer = QFormer(cfg)
        self.quantize = _Codebook(cfg.codebook_size, cfg.codebook_dim)
        self.encode_task_layer = _tanh_mlp(d, d, cfg.codebook_dim)
        self.decode_task_layer = _tanh_mlp(cfg.codebook_dim, cfg.codebook_dim, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, d))
        self.blocks = nn.ModuleList(ViTBlock(d, cfg.decode_heads) for _ in range(cfg.decode_depth))
        self.pos_embed_image = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, d))
        self.blocks_image = nn.ModuleList(ViTBlock(d, cfg.decode_heads) for _ in range(cfg.decode_depth))
        a, b, c = cfg.image_down_dims
        self.image_down = nn.Sequential(nn.Linear(d, a, bias=False), nn.ReLU(), nn.Linear(a, b, bias=False),
                                        nn.ReLU(), nn.Linear(b, c, bias=False))
        self.distill_image_proj = nn.Linear(cfg.num_query_tokens * c, cfg.image_embed_dim)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels FloatTensor [B, 3, 224, 224] (CLIP-normalised) -> codes LongTensor [B, 32]."""
        dtype = self.query_tokens.dtype
        image = self.ln_vision(self.visual_encoder(pixels.to(dtype)))
        q = self.Qformer.bert(self.query_tokens.expand(pixels.shape[0], -1, -1), image)
        z = self.encode_task_layer(q)  # [B, 32, 32]
        cb = self.quantize.embedding.weight
        dist = z.pow(2).sum(-1, keepdim=True) - 2 * z @ cb.t() + cb.pow(2).sum(-1)
        return dist.argmin(-1)

    @torch.no_grad()
    def decode_embedding(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor [B, 32] in 0..8191 -> unCLIP image embedding FloatTensor [B, 1024]."""
        h = self.decode_task_layer(self.quantize.embedding(codes)) + self.pos_embed_image
        for blk in self.blocks_image:
            h = blk(h)
        return self.distill_image_proj(self.image_down(h).flatten(1))


# ---------------------------------------------------------------- loading
# keys the release may carry that this module deliberately does not build (unused branches
# the SEED code sets to None before training, or non-persistent helpers)
_IGNORABLE_PREFIXES = ("Qformer.cls.", "Qformer.bert.embeddings.word_embeddings.",
                       "Qformer.bert.embeddings.position_embeddings.", "Qformer.bert.embeddings.position_ids")
_IGNORABLE_INFIXES = (".intermediate.", ".output.dense.", ".output.LayerNorm.")


def _ignorable(key: str) -> bool:
    if key.startswith(_IGNORABLE_PREFIXES):
        return True
    # BERT text-branch feed-forward (layer.N.intermediate / layer.N.output), not the query branch
    if key.startswith("Qformer.bert.encoder.layer.") and any(s in key for s in _IGNORABLE_INFIXES):
        parts = key.split(".")
        return len(parts) > 5 and parts[5] in ("intermediate", "output")
    return False


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a pickled SEED checkpoint (torch.load with weights_only=True), unwrapping {'model': ...}."""
    from anygpt.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found (expected SEED-2's seed_quantizer.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors come in many types
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return state


def load_seed2_state(model: Seed2Quantizer, state: dict[str, torch.Tensor], *, source: str = "checkpoint",
                     vit_state: dict[str, torch.Tensor] | None = None) -> None:
    """Load `state` into `model` with strict key matching.

    Every parameter of the model must be present with the right shape; keys the release may
    carry for branches we do not build (Qformer.cls, word/position embeddings, the text FFN)
    are ignored; any other extra key is an error. The EVA-ViT weights may come from a separate
    `vit_state` (the BLIP-2 eva_vit_g.pth, keys without the `visual_encoder.` prefix) when the
    checkpoint does not carry them.
    """
    from anygpt.errors import CheckpointError

    state = dict(state)
    if vit_state is not None:
        for k, v in vit_state.items():
            state.setdefault(f"visual_encoder.{k}", v)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own and not _ignorable(k)
                        and not (k.startswith("visual_encoder.") and k.split(".")[1] in ("norm", "head", "fc_norm", "rel_pos_bias")))
    bad = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        def show(xs):
            return ", ".join(xs[:6]) + (f", ... ({len(xs)} in all)" if len(xs) > 6 else "")
        msg = [f"{source}: does not match the SEED-2 key layout"]
        if missing:
            hint = " (EVA-ViT weights missing: pass the BLIP-2 eva_vit_g.pth as vit_path)" if any(
                k.startswith("visual_encoder.") for k in missing) else ""
            msg.append(f"missing {show(missing)}{hint}")
        if unexpected:
            msg.append(f"unexpected {show(unexpected)}")
        if bad:
            msg.append(f"wrong shapes {show(bad)}")
        raise CheckpointError("; ".join(msg))
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def preprocess(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """images FloatTensor [B, 3, H, W] in [0, 1] -> [B, 3, size, size], bicubic, CLIP mean/std."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False,
                               antialias=True).clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def expected_shapes(cfg: Seed2Config = Seed2Config()) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the model for cfg without allocating it (meta device)."""
    with torch.device("meta"):
        model = Seed2Quantizer(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def num_parameters(cfg: Seed2Config = Seed2Config()) -> int:
    return sum(math.prod(s) for s in expected_shapes(cfg).values())
