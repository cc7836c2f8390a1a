"""Image tokenizers: the released SEED-2 (+ SD 2.1 unCLIP de-tokenizer) and our compact one.

Both write a fixed number of codes per image, one codebook, with the release's image markers:

| name     | input            | codes per image | codebook | decoder                                  |
|----------|------------------|-----------------|----------|------------------------------------------|
| released | 224x224, CLIP    | 32              | 8192     | 1024-d embedding -> SD 2.1 unCLIP (diffusers) |
| compact  | 64x64            | 32              | 1024     | transformer + conv, pixels directly      |

Media are FloatTensor [B, 3, H, W] in [0, 1]; any other size is padded to a square on white
and resized (the image corpus does the same). Codes are LongTensor [B, 1, 32]. The shipped
compact weights are loaded by `load_compact_image_tokenizer` (tokenizer "compact" in the registry).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from anygpt.asset_paths import (IMAGE_TOKENIZER_GRID_DIR, IMAGE_TOKENIZER_GRID_RETRAIN, IMAGE_TOKENIZER_RETRAIN,
                                IMAGE_TOKENIZER_TINY_DIR, WEIGHTS, shipped)
from anygpt.errors import CheckpointError, MediaError
from anygpt.media_io import load_image, save_image
from anygpt.modalities.base import ModalityTokenizer
from anygpt.modalities.specs import IMAGE_EXTENSIONS, RELEASED_IMAGE_SPEC
from anygpt.token_spec import TokenSpec

SEED2_WEIGHTS = "seed_quantizer.pt"
EVA_WEIGHTS = "eva_vit_g.pth"
DIFFUSION_FOLDER = "diffusion_model"


def fit_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 3, size, size]: pad the short side with white, then resize
    (area-averaging bicubic when shrinking)."""
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise MediaError(f"expected images [B, 3, H, W], got shape {tuple(images.shape)}")
    _, _, h, w = images.shape
    if h != w:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        images = F.pad(images, (left, side - w - left, top, side - h - top), value=1.0)
    if images.shape[-1] != size:
        images = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False,
                               antialias=True).clamp(0, 1)
    return images


class _ImageTokenizer(ModalityTokenizer):
    """frames_per_item: codes per image (32); images have no frame rate."""

    name = "image"
    num_codebooks = 1
    file_extensions = IMAGE_EXTENSIONS
    frames_per_item: int

    @property
    def token_spec(self) -> TokenSpec:
        return replace(RELEASED_IMAGE_SPEC, codebook_size=self.codebook_size, frames_per_item=self.frames_per_item)

    def load(self, path: str | Path) -> torch.Tensor:
        """Any image file (any size; RGBA, grayscale, palette...) -> [3, S, S] in [0, 1]."""
        img = load_image(path)  # clear MediaError for missing / corrupt files
        return fit_square(img, self.image_size[0])[0]

    def save(self, media: torch.Tensor, path: str | Path) -> Path:
        return save_image(media, path)

    def _prepare(self, media: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(media) or not media.is_floating_point():
            raise MediaError("images must be a float tensor [B, 3, H, W] in [0, 1]")
        # one sum first: finite whenever every value is (a cheap pass on the encode path)
        if not torch.isfinite(media.sum()) and not torch.isfinite(media).all():
            raise MediaError("images contain NaN or infinite values")
        return fit_square(media, self.image_size[0]).clamp(0, 1)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() == 2:
            codes = codes.unsqueeze(1)
        n = self.frames_per_item
        if codes.dim() != 3 or codes.shape[1] != 1 or codes.shape[2] != n:
            raise ValueError(f"image codes must be [B, 1, {n}], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"image codes must be in 0..{self.codebook_size - 1}")
        return codes.long()


# ---------------------------------------------------------------- ours
class CompactImageTokenizer(_ImageTokenizer):
    """Compact SEED-style tokenizer (anygpt.nn.query_former): 64x64, 32 codes of 1024."""

    def __init__(self, model, *, bf16: bool = True) -> None:
        self.model = model.eval()
        cfg = model.cfg
        self.image_size = (cfg.image_size, cfg.image_size)
        self.frames_per_item = cfg.num_queries
        self.codebook_size = cfg.codebook_size
        self.bf16 = bf16

    @classmethod
    def from_folder(cls, path: str | Path, **kw) -> "CompactImageTokenizer":
        """Load model.safetensors + config.json from the folder `path` (the shipped weights:
        load_compact_image_tokenizer below)."""
        from anygpt.nn.query_former import QueryTokenizer, QueryTokenizerConfig
        from anygpt.nn.weights import read_meta, read_safetensors

        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        for f in (cfg_file, weights):
            if not f.is_file():
                raise CheckpointError(
                    f"{f} not found: train and export the compact image tokenizer with "
                    f"`{IMAGE_TOKENIZER_RETRAIN}`")
        try:
            cfg = QueryTokenizerConfig.from_dict(read_meta(path))
            model = QueryTokenizer(cfg)
        except (TypeError, ValueError, KeyError) as e:  # a config of other fields or values
            raise CheckpointError(f"{cfg_file}: not a config of the compact image tokenizer ({e})") from None
        state = {k: v.float() if v.is_floating_point() else v for k, v in read_safetensors(weights).items()}  # fp16 too
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise CheckpointError(f"{weights}: does not match {cfg_file} ({str(e).splitlines()[0]})") from None
        missing = [k for k in missing if k != "quantizer.embed_sum"]  # EMA training state, not shipped
        if missing or unexpected:
            raise CheckpointError(f"{weights}: does not match {cfg_file} (missing {missing[:5]}, unexpected {unexpected[:5]})")
        vq = model.quantizer
        if "quantizer.embed_sum" not in state and vq.ema:
            # rebuild the EMA sums from the codebook (codebook = embed_sum / cluster_size), so that
            # training on from here (`--init`) keeps the codebook instead of pulling it to random rows
            with torch.no_grad():
                vq.embed_sum.copy_(vq.codebook.float() * vq.cluster_size.float()[:, None])
        return cls(model, **kw)

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> codes LongTensor [B, 1, 32]."""
        x = self._prepare(media)
        with torch.inference_mode(), self._autocast():
            return self.model.encode(x).unsqueeze(1)

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """codes LongTensor [B, 1, 32] (or [B, 32]) -> images FloatTensor [B, 3, 64, 64] in [0, 1]."""
        codes = self._check_codes(codes)
        with torch.inference_mode(), self._autocast():
            return self.model.decode(codes[:, 0]).float().clamp(0, 1)

    def lm_code_vectors(self) -> torch.Tensor:
        """[codebook_size, dim]: each code's vector as the decoder reads it."""
        with torch.inference_mode():
            return self.model.code_vectors(torch.arange(self.codebook_size)[None])[0].float().clone()

    def semantic_embedding(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 1, 32] -> unit vectors [B, 384] in the MiniLM caption space."""
        codes = self._check_codes(codes)
        with torch.inference_mode():
            return self.model.semantic_embedding(self.model.code_vectors(codes[:, 0]))


# ---------------------------------------------------------------- released
class Seed2ImageTokenizer(_ImageTokenizer):
    """SEED-2 as in the release: 224x224 -> 32 codes of 8192; codes -> 1024-d -> SD 2.1 unCLIP.

    folder: holds seed_quantizer.pt (and eva_vit_g.pth if the former lacks the ViT weights).
    diffusion_path: a diffusers folder of stabilityai/stable-diffusion-2-1-unclip
        (default: folder/diffusion_model if present); needed only by `decode`.
    """

    def __init__(self, model, *, diffusion_path: str | Path | None = None, pipeline=None,
                 num_inference_steps: int = 20, guidance_scale: float = 10.0, seed: int = 0) -> None:
        self.model = model.eval()
        self.image_size = (model.cfg.image_size, model.cfg.image_size)
        self.frames_per_item = model.cfg.num_query_tokens
        self.codebook_size = model.cfg.codebook_size
        self.diffusion_path = Path(diffusion_path) if diffusion_path is not None else None
        self._pipeline = pipeline
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.seed = seed

    @classmethod
    def from_folder(cls, path: str | Path, *, diffusion_path: str | Path | None = None,
                    vit_path: str | Path | None = None, config=None, dtype: torch.dtype = torch.float32,
                    **kw) -> "Seed2ImageTokenizer":
        from anygpt.nn.seed2 import Seed2Config, Seed2Quantizer, load_seed2_state, read_checkpoint

        path = Path(path)
        weights = path / SEED2_WEIGHTS if path.is_dir() else path
        folder = weights.parent
        if not weights.is_file():
            raise CheckpointError(f"{weights} not found: put SEED-2's {SEED2_WEIGHTS} (AILab-CVC/seed-tokenizer-2) there")
        state = read_checkpoint(weights)
        vit_state = None
        if not any(k.startswith("visual_encoder.") for k in state):
            vit_file = Path(vit_path) if vit_path else folder / EVA_WEIGHTS
            if not vit_file.is_file():
                raise CheckpointError(
                    f"{weights} has no EVA-ViT weights and {vit_file} is missing: put BLIP-2's {EVA_WEIGHTS} beside it "
                    f"or pass vit_path")
            vit_state = read_checkpoint(vit_file)
        with torch.device("meta"):
            model = Seed2Quantizer(config or Seed2Config())
        model = model.to_empty(device="cpu")
        load_seed2_state(model, state, source=str(weights), vit_state=vit_state)
        model = model.to(dtype)
        if diffusion_path is None and (folder / DIFFUSION_FOLDER).is_dir():
            diffusion_path = folder / DIFFUSION_FOLDER
        return cls(model, diffusion_path=diffusion_path, **kw)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> codes LongTensor [B, 1, 32] in 0..8191."""
        from anygpt.nn.seed2 import preprocess

        x = preprocess(self._prepare(media), self.image_size[0])
        with torch.inference_mode():
            return self.model.encode(x).unsqueeze(1)

    def decode_embedding(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, 1, 32] -> unCLIP image embeddings FloatTensor [B, 1024]."""
        codes = self._check_codes(codes)
        with torch.inference_mode():
            return self.model.decode_embedding(codes[:, 0]).float()

    @property
    def pipeline(self):
        if self._pipeline is None:
            if self.diffusion_path is None:
                raise CheckpointError(
                    "SEED-2 decoding needs the Stable Diffusion 2.1 unCLIP folder (diffusers format of "
                    "stabilityai/stable-diffusion-2-1-unclip): pass diffusion_path or put it in "
                    f"<folder>/{DIFFUSION_FOLDER}; decode_embedding() gives the 1024-d embedding without it")
            try:
                from diffusers import StableUnCLIPImg2ImgPipeline
            except ImportError:
                raise CheckpointError("SEED-2 decoding needs diffusers: pip install 'diffusers>=0.30,<0.36'") from None
            if not Path(self.diffusion_path).is_dir():
                raise CheckpointError(f"{self.diffusion_path}: diffusion folder not found")
            self._pipeline = StableUnCLIPImg2ImgPipeline.from_pretrained(str(self.diffusion_path), local_files_only=True)
            self._pipeline.set_progress_bar_config(disable=True)
        return self._pipeline

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """codes [B, 1, 32] -> images FloatTensor [B, 3, H, W] in [0, 1] (768x768 for SD 2.1 unCLIP).

        As in the release: the embedding is the unCLIP image embedding, noise level 0, empty
        prompt, classifier-free guidance against a zero embedding. context: num_inference_steps
        (20), guidance_scale (10), seed, height, width.
        """
        emb = self.decode_embedding(codes)
        pipe = self.pipeline
        dtype = next(pipe.unet.parameters()).dtype
        gen = torch.Generator().manual_seed(int(context.get("seed", self.seed)))
        out = pipe(prompt=[""] * len(emb), image_embeds=emb.to(dtype),
                   num_inference_steps=int(context.get("num_inference_steps", self.num_inference_steps)),
                   guidance_scale=float(context.get("guidance_scale", self.guidance_scale)),
                   noise_level=0, generator=gen, output_type="pt",
                   height=context.get("height"), width=context.get("width"))
        return out.images.float().clamp(0, 1)


def load_released_image_tokenizer(path: str | Path, **kwargs) -> Seed2ImageTokenizer:
    """Tokenizer "released": SEED-2 from a folder with seed_quantizer.pt (see Seed2ImageTokenizer)."""
    return Seed2ImageTokenizer.from_folder(path, **kwargs)


def load_compact_image_tokenizer(path: str | Path | None = None, *, bf16: bool = True) -> CompactImageTokenizer:
    """Tokenizer "compact": CompactImageTokenizer from `path`, default the shipped weights
    (anygpt/assets/image-tokenizer-tiny); bf16: autocast on CPU."""
    folder = Path(path) if path is not None else shipped(IMAGE_TOKENIZER_TINY_DIR, WEIGHTS, IMAGE_TOKENIZER_RETRAIN)
    return CompactImageTokenizer.from_folder(folder, bf16=bf16)


def load_grid_image_tokenizer(path: str | Path | None = None, *, bf16: bool = True) -> CompactImageTokenizer:
    """Tokenizer "grid": CompactImageTokenizer with local codes (encoder "grid") from `path`,
    default the shipped weights (anygpt/assets/image-tokenizer-grid); bf16: autocast on CPU."""
    folder = Path(path) if path is not None else shipped(IMAGE_TOKENIZER_GRID_DIR, WEIGHTS,
                                                         IMAGE_TOKENIZER_GRID_RETRAIN)
    return CompactImageTokenizer.from_folder(folder, bf16=bf16)
