"""SoundStorm-style acoustic model (arXiv 2305.09636): masked parallel decoding of RVQ layers
2..K from layer 1 (the "semantic" codes the LM writes) and the codes of a voice prompt.

One Conformer (arXiv 2005.08100) reads, per code frame, the sum of
  - the embedding of the layer-1 code (`semantic_token_emb`), and
  - the embeddings of the frame's acoustic codes (`net.code_embeds`; one table of
    (codebook_size + 1) rows per acoustic layer, the extra row being that layer's [MASK]),
and predicts, per frame and acoustic layer, logits over that layer's codebook.

Voice cloning: the prompt's frames (all layers known) are put in front of the target's frames
(layer 1 known, acoustic layers masked); attention spreads the prompt's voice over the target.

Training (`SoundStorm.loss`): a prompt prefix of random length keeps all its codes; in the
rest, a random acoustic layer q is masked at a cosine-scheduled rate, layers above q are fully
masked and layers below are given; cross-entropy on the masked tokens of layer q.
Generation (`SoundStorm.generate`): layer by layer, MaskGIT iterative decoding (cosine
schedule, confidence-based re-masking) with `steps[q]` iterations for layer q (the release
decodes the first acoustic layer in several steps and the others greedily in one).

Parameter names follow the released SoundStorm checkpoint of AnyGPT
(fnlp/AnyGPT-speech-modules `soundstorm/speechtokenizer_soundstorm_mls.pt`, built by
ZhangXInFD/soundstorm-speechtokenizer on lucidrains' soundstorm-pytorch Conformer), so that its
state dict loads strictly into `SoundStorm(RELEASED_SOUNDSTORM_CONFIG)`:
  semantic_token_emb.weight, net.code_embeds.weight,
  net.conformer.layers.{i}.{ff1,ff2}.fn.{norm,fn.net.0,fn.net.3}, .attn.{norm,fn.to_q,fn.to_kv,fn.to_out},
  .conv.net.{0 (LayerNorm), 2 (pointwise, GLU input), 4.conv (depthwise), 6.gamma, 7 (pointwise)},
  .post_norm, net.heads.0, net.to_logits.0 (LayerNorm), net.to_logits.2.{weight [Q, D, L], bias [Q, L]}.
The released file is a bare state dict (torch.save of the model's state_dict, no prefix, no
{'model': ...} wrapper; the release loads it strictly into its SoundStorm). Its only difference
from ours is the shape of net.to_logits.2.bias: the release makes that layer with einops' EinMix,
which stores a bias aligned to the output axes 'b n q l', i.e. [1, 1, Q, L]; `released_state_dict`
and `load_released_soundstorm` convert between the two. Facts read from OpenMOSS/AnyGPT
(anygpt/src/infer/voice_clone.py) and ZhangXInFD/soundstorm-speechtokenizer
(soundstorm_speechtokenizer/soundstorm.py, trainer.py).
Rotary position embedding on the full head width, no learned positions (as the release).
This file is our own implementation; none of the release's code is used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anygpt.errors import CheckpointError


@dataclass
class SoundStormConfig:
    dim: int = 192
    depth: int = 4
    heads: int = 4
    dim_head: int = 48
    ff_mult: int = 2
    conv_expansion: int = 2
    conv_kernel: int = 15
    num_quantizers: int = 5  # acoustic layers predicted (RVQ layers 2..K)
    codebook_size: int = 512  # of the acoustic layers
    num_semantic_token_ids: int = 512  # layer-1 codebook size
    dropout: float = 0.1
    schedule: str = "cosine"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SoundStormConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# The released model (soundstorm-speechtokenizer README and AnyGPT's voice_clone loader):
# ConformerWrapper(codebook_size=1024, num_quantizers=7, conformer=dict(dim=1024, depth=12, heads=8,
# dim_head=128)), SoundStorm(num_semantic_token_ids=1024, semantic_pad_id=1024, pad_id=1024, schedule="cosine").
RELEASED_SOUNDSTORM_CONFIG = SoundStormConfig(dim=1024, depth=12, heads=8, dim_head=128, ff_mult=4, conv_expansion=2,
                                              conv_kernel=31, num_quantizers=7, codebook_size=1024,
                                              num_semantic_token_ids=1024, dropout=0.0, schedule="cosine")


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    """Fraction of tokens still masked at time t in [0, 1] (MaskGIT, arXiv 2202.04200)."""
    return torch.cos(t * math.pi / 2)


# ------------------------------------------------------------------------------ Conformer
class _Scale(nn.Module):
    def __init__(self, scale: float, fn: nn.Module):
        super().__init__()
        self.scale, self.fn = scale, fn

    def forward(self, x, **kw):
        return self.fn(x, **kw) * self.scale


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x, **kw):
        return self.fn(self.norm(x), **kw)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(dim * mult, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x, mask=None, rotary=None):
        b, n, _ = x.shape
        q, k, v = (self.to_q(x), *self.to_kv(x).chunk(2, dim=-1))
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        if rotary is not None:
            cos, sin = rotary.cos().to(q.dtype), rotary.sin().to(q.dtype)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        attn_mask = mask[:, None, None, :] if mask is not None else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class _GLU(nn.Module):
    def forward(self, x):
        a, g = x.chunk(2, dim=1)
        return a * g.sigmoid()


class _DepthwiseConv(nn.Module):
    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.pad = (kernel // 2, kernel // 2 - (kernel + 1) % 2)
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class _ChanLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, dim, 1))

    def forward(self, x):
        eps = 1e-6 if x.dtype == torch.float32 else 1e-4
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * var.clamp(min=eps).rsqrt() * self.gamma


class _ConvModule(nn.Module):
    def __init__(self, dim: int, expansion: int, kernel: int, dropout: float):
        super().__init__()
        inner = dim * expansion
        self.net = nn.Sequential(
            nn.LayerNorm(dim), _Transpose(), nn.Conv1d(dim, inner * 2, 1), _GLU(),
            _DepthwiseConv(inner, kernel), nn.SiLU(), _ChanLayerNorm(inner), nn.Conv1d(inner, dim, 1),
            _Transpose(), nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class ConformerBlock(nn.Module):
    """Half-step FF, self-attention, convolution module, half-step FF, LayerNorm (Conformer)."""

    def __init__(self, cfg: SoundStormConfig):
        super().__init__()
        d = cfg.dim
        self.ff1 = _Scale(0.5, _PreNorm(d, _FeedForward(d, cfg.ff_mult, cfg.dropout)))
        self.attn = _PreNorm(d, _Attention(d, cfg.heads, cfg.dim_head, cfg.dropout))
        self.conv = _ConvModule(d, cfg.conv_expansion, cfg.conv_kernel, cfg.dropout)
        self.ff2 = _Scale(0.5, _PreNorm(d, _FeedForward(d, cfg.ff_mult, cfg.dropout)))
        self.post_norm = nn.LayerNorm(d)

    def forward(self, x, mask=None, rotary=None):
        x = self.ff1(x) + x
        x = self.attn(x, mask=mask, rotary=rotary) + x
        x = self.conv(x) + x
        x = self.ff2(x) + x
        return self.post_norm(x)


class Conformer(nn.Module):
    def __init__(self, cfg: SoundStormConfig):
        super().__init__()
        self.dim = cfg.dim
        self.layers = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.depth))
        inv = 1.0 / (10000 ** (torch.arange(0, cfg.dim_head, 2).float() / cfg.dim_head))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, x, mask=None):
        t = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        rotary = torch.cat((freqs, freqs), dim=-1)  # [N, dim_head]
        for block in self.layers:
            x = block(x, mask=mask, rotary=rotary)
        return x


class _PerQuantizerLogits(nn.Module):
    """[B, N, Q, D] -> [B, N, Q, L] with one weight [D, L] and bias [L] per quantizer."""

    def __init__(self, q: int, dim: int, codebook_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(q, dim, codebook_size).uniform_(-dim ** -0.5, dim ** -0.5))
        self.bias = nn.Parameter(torch.zeros(q, codebook_size))

    def forward(self, x):
        return torch.einsum("bnqd,qdl->bnql", x, self.weight.to(x.dtype)) + self.bias.to(x.dtype)


class ConformerWrapper(nn.Module):
    """Acoustic codes [B, N, Q] (value codebook_size = [MASK]) + condition [B, N, D] -> logits [B, N, Q, L]."""

    def __init__(self, cfg: SoundStormConfig):
        super().__init__()
        d, q, l = cfg.dim, cfg.num_quantizers, cfg.codebook_size
        self.num_quantizers, self.codebook_size, self.dim = q, l, d
        self.code_embeds = nn.Embedding((l + 1) * q, d)
        self.register_buffer("quantizer_offsets", torch.arange(q) * (l + 1), persistent=False)
        self.conformer = Conformer(cfg)
        self.heads = nn.Sequential(nn.Linear(d, d * q), nn.Identity())
        self.to_logits = nn.Sequential(nn.LayerNorm(d), nn.Identity(), _PerQuantizerLogits(q, d, l), nn.Identity())

    def forward(self, codes: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, q = codes.shape
        x = self.code_embeds(codes + self.quantizer_offsets).sum(dim=2) + cond
        x = self.conformer(x, mask=mask)
        h = self.heads(x).reshape(b, n, q, self.dim)
        h = self.to_logits[0](h)
        return self.to_logits[2](h)


class SoundStorm(nn.Module):
    """Layer-1 codes [B, N] + acoustic codes [B, N, Q] -> logits [B, N, Q, L]; see the module doc."""

    def __init__(self, cfg: SoundStormConfig):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.net = ConformerWrapper(cfg)
        self.semantic_token_emb = nn.Embedding(cfg.num_semantic_token_ids, cfg.dim)
        self.mask_id = cfg.codebook_size
        self.num_quantizers = cfg.num_quantizers

    def forward(self, semantic: torch.Tensor, acoustic: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """semantic LongTensor [B, N]; acoustic LongTensor [B, N, Q] with mask_id where unknown;
        mask BoolTensor [B, N] (True = real frame) -> logits [B, N, Q, codebook_size]."""
        return self.net(acoustic, self.semantic_token_emb(semantic), mask)

    # ---------------------------------------------------------------- training
    def loss(self, semantic: torch.Tensor, acoustic: torch.Tensor, prompt_len: torch.Tensor,
             mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SoundStorm training step. semantic [B, N], acoustic [B, N, Q] (true codes), prompt_len
        LongTensor [B] (frames at the start that keep all their codes), mask [B, N] real frames.
        -> (cross-entropy on the masked tokens of the chosen layer, their accuracy)."""
        b, n, q_all = acoustic.shape
        dev = acoustic.device
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=dev)
        pos = torch.arange(n, device=dev)[None]
        target_region = (pos >= prompt_len[:, None]) & mask  # [B, N]
        q = torch.randint(0, q_all, (b,), generator=generator).to(dev)  # layer per item
        t = torch.rand(b, generator=generator).to(dev)
        rate = cosine_schedule(t).clamp(min=1.0 / max(n, 1))
        noise = torch.rand(b, n, generator=generator).to(dev)
        masked_q = (noise < rate[:, None]) & target_region
        # guarantee at least one masked token per item that has a target region
        first = torch.argmax(target_region.long() * (1 + noise), dim=1)
        masked_q[torch.arange(b), first] |= target_region[torch.arange(b), first]
        layer = torch.arange(q_all, device=dev)[None, None]  # [1, 1, Q]
        qq = q[:, None, None]
        tok_mask = (layer == qq) & masked_q[..., None] | (layer > qq) & target_region[..., None]
        inp = acoustic.masked_fill(tok_mask, self.mask_id)
        logits = self(semantic, inp, mask)
        sel = (layer == qq) & masked_q[..., None]
        ce = F.cross_entropy(logits[sel].float(), acoustic[sel])
        acc = (logits[sel].argmax(-1) == acoustic[sel]).float().mean()
        return ce, acc

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, semantic: torch.Tensor, prompt_semantic: torch.Tensor | None = None,
                 prompt_acoustic: torch.Tensor | None = None, steps: Sequence[int] | int = (8, 1),
                 temperature: float = 1.0, greedy: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """semantic LongTensor [B, N] (+ optional prompt: prompt_semantic [B, P], prompt_acoustic
        [B, P, Q]) -> acoustic codes LongTensor [B, N, Q] for the target frames.

        steps: MaskGIT iterations per acoustic layer; a shorter list repeats its last entry
        (default: 8 for the first acoustic layer, 1 (greedy) for the others). Sampling uses the
        Gumbel trick with temperature annealed to 0 over the iterations, or argmax if greedy."""
        self.eval()
        b, n = semantic.shape
        q_all, dev = self.num_quantizers, semantic.device
        steps = [steps] if isinstance(steps, int) else list(steps)
        steps = steps + [steps[-1]] * (q_all - len(steps))
        if prompt_semantic is not None and prompt_acoustic is not None and prompt_semantic.shape[1] > 0:
            sem = torch.cat([prompt_semantic, semantic], dim=1)
            acoustic = torch.cat([prompt_acoustic, torch.full((b, n, q_all), self.mask_id, device=dev)], dim=1)
            p = prompt_semantic.shape[1]
        else:
            sem, acoustic, p = semantic, torch.full((b, n, q_all), self.mask_id, device=dev, dtype=torch.long), 0
        acoustic = acoustic.long()
        for q in range(q_all):
            unknown = torch.zeros(b, sem.shape[1], dtype=torch.bool, device=dev)
            unknown[:, p:] = True
            n_steps = max(1, steps[q])
            for i in range(n_steps):
                logits = self(sem, acoustic)[:, :, q].float()  # [B, N', L]
                if greedy or n_steps == 1:
                    ids = logits.argmax(-1)
                else:
                    temp = temperature * (1 - i / n_steps)
                    u = torch.rand(logits.shape, generator=generator).to(dev).clamp(1e-10, 1 - 1e-10)
                    ids = (logits / max(temp, 1e-6) - torch.log(-torch.log(u)) * (temp > 0)).argmax(-1)
                probs = logits.softmax(-1).gather(-1, ids[..., None])[..., 0]
                cur = acoustic[:, :, q]
                filled = torch.where(unknown, ids, cur)
                # how many stay masked after this iteration
                keep_masked = int(math.floor(float(cosine_schedule(torch.tensor((i + 1) / n_steps))) * n))
                if keep_masked > 0:
                    conf = torch.where(unknown, probs, torch.full_like(probs, float("inf")))
                    lowest = conf.topk(keep_masked, dim=1, largest=False).indices
                    new_unknown = torch.zeros_like(unknown)
                    new_unknown.scatter_(1, lowest, True)
                    new_unknown &= unknown
                    filled = torch.where(new_unknown, torch.full_like(filled, self.mask_id), filled)
                    unknown = new_unknown
                else:
                    unknown = torch.zeros_like(unknown)
                acoustic[:, :, q] = filled
        return acoustic[:, p:]


# ------------------------------------------------------------------------------ files
def save_soundstorm(model: SoundStorm, folder: str | Path, extra: dict | None = None) -> Path:
    """Write config.json + model.safetensors (float16) into folder."""
    from anygpt.nn.weights import inference_state, save_weights

    return save_weights(folder, inference_state(model), {"soundstorm": model.cfg.to_dict(), **(extra or {})})


def load_soundstorm(folder: str | Path) -> SoundStorm:
    """Our format: folder with config.json + model.safetensors (all keys required)."""
    from anygpt.nn.weights import load_inference_state, read_meta

    meta = read_meta(folder)
    model = SoundStorm(SoundStormConfig.from_dict(meta.get("soundstorm", meta)))
    return load_inference_state(model, folder, optional=()).eval()


# The release's logits bias is einops EinMix's [1, 1, Q, L]; ours is [Q, L].
RELEASED_LOGITS_BIAS = "net.to_logits.2.bias"


def released_state_dict(model: SoundStorm) -> dict[str, torch.Tensor]:
    """Our model's state dict in the layout of the released checkpoint (bare, bias [1, 1, Q, L])."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state[RELEASED_LOGITS_BIAS] = state[RELEASED_LOGITS_BIAS][None, None]
    return state


def _from_released_state(state: dict) -> dict:
    """The released layout -> ours (the logits bias [1, 1, Q, L] -> [Q, L]); other keys unchanged."""
    state = dict(state)
    bias = state.get(RELEASED_LOGITS_BIAS)
    if torch.is_tensor(bias) and bias.dim() == 4:
        state[RELEASED_LOGITS_BIAS] = bias.reshape(bias.shape[-2:])
    return state


def load_released_soundstorm(path: str | Path, *, depth: int | None = None) -> SoundStorm:
    """The released checkpoint (fnlp/AnyGPT-speech-modules soundstorm/speechtokenizer_soundstorm_mls.pt:
    a bare state dict; a SoundStormTrainer checkpoint {'model': state dict, ...} works too) ->
    SoundStorm(RELEASED_SOUNDSTORM_CONFIG), read with weights_only=True and loaded strictly.
    depth: Conformer layers, an override for reduced test models (default: the release's 12)."""
    path = Path(path)
    cfg = RELEASED_SOUNDSTORM_CONFIG if depth is None else SoundStormConfig.from_dict(
        {**RELEASED_SOUNDSTORM_CONFIG.to_dict(), "depth": depth})
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected the released SoundStorm checkpoint "
                              "(soundstorm/speechtokenizer_soundstorm_mls.pt of fnlp/AnyGPT-speech-modules)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of every kind: the message names the file
        raise CheckpointError(f"{path}: not a torch state dict that loads with weights_only=True ({e})") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    model = SoundStorm(cfg)
    try:
        model.load_state_dict(_from_released_state(state), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the released SoundStorm (dim {cfg.dim}, "
                              f"depth {cfg.depth}, {cfg.num_quantizers} x {cfg.codebook_size} codes): {e}") from e
    return model.eval()
