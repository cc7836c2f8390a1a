"""The released SEED-2 path: key layout, strict loading, shapes, and the unCLIP decoder wiring.

Random weights at reduced depth/width in the exact key layout of seed_quantizer.pt; the full-size
config is checked on the meta device (no memory) for the shapes of named keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anygpt.errors import CheckpointError
from anygpt.modalities import load_tokenizer
from anygpt.modalities.image_tokenizers import Seed2ImageTokenizer
from anygpt.nn.seed2 import Seed2Config, Seed2Quantizer, expected_shapes, preprocess

SMALL = Seed2Config(image_size=28, vit_dim=64, vit_depth=2, vit_heads=4, vit_mlp_dim=96, qformer_dim=48,
                    qformer_layers=4, qformer_heads=4, qformer_intermediate=64, codebook_size=64,
                    decode_depth=2, decode_heads=4, image_down_dims=(16, 8, 4), image_embed_dim=32)


def _random_model(seed: int = 0) -> Seed2Quantizer:
    torch.manual_seed(seed)
    m = Seed2Quantizer(SMALL)
    with torch.no_grad():
        m.quantize.embedding.weight.normal_()
        m.query_tokens.normal_(std=0.5)
        m.visual_encoder.pos_embed.normal_(std=0.5)
    return m.eval()


def _write_release(folder: Path, model: Seed2Quantizer, *, extra: bool = True, split_vit: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict())
    if extra:  # keys the release carries for branches that are not used
        state["Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
        state["Qformer.cls.predictions.bias"] = torch.zeros(10)
        state["Qformer.bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(64, 48)
        state["Qformer.bert.encoder.layer.0.output.dense.weight"] = torch.zeros(48, 64)
    if split_vit:
        vit = {k[len("visual_encoder."):]: v for k, v in state.items() if k.startswith("visual_encoder.")}
        state = {k: v for k, v in state.items() if not k.startswith("visual_encoder.")}
        torch.save(vit, folder / "eva_vit_g.pth")
    torch.save(state, folder / "seed_quantizer.pt")
    return folder


def test_full_size_key_shapes_on_meta():
    shapes = expected_shapes(Seed2Config())
    assert shapes["visual_encoder.patch_embed.proj.weight"] == (1408, 3, 14, 14)
    assert shapes["visual_encoder.pos_embed"] == (1, 257, 1408)
    assert shapes["visual_encoder.blocks.38.attn.qkv.weight"] == (4224, 1408)
    assert shapes["visual_encoder.blocks.38.attn.q_bias"] == (1408,)
    assert shapes["visual_encoder.blocks.38.mlp.fc1.weight"] == (6144, 1408)
    assert "visual_encoder.blocks.39.norm1.weight" not in shapes
    assert shapes["ln_vision.weight"] == (1408,)
    assert shapes["query_tokens"] == (1, 32, 768)
    assert shapes["Qformer.bert.encoder.layer.0.crossattention.self.key.weight"] == (768, 1408)
    assert "Qformer.bert.encoder.layer.1.crossattention.self.key.weight" not in shapes  # every other layer
    assert shapes["Qformer.bert.encoder.layer.11.intermediate_query.dense.weight"] == (3072, 768)
    assert shapes["Qformer.bert.encoder.layer.11.output_query.LayerNorm.weight"] == (768,)
    assert shapes["encode_task_layer.2.weight"] == (32, 768)
    assert shapes["quantize.embedding.weight"] == (8192, 32)
    assert shapes["decode_task_layer.2.weight"] == (768, 32)
    assert shapes["pos_embed_image"] == (1, 32, 768)
    assert shapes["blocks_image.3.attn.qkv.bias"] == (2304,)
    assert shapes["image_down.0.weight"] == (256, 768) and "image_down.0.bias" not in shapes
    assert shapes["image_down.4.weight"] == (32, 128)
    assert shapes["distill_image_proj.weight"] == (1024, 1024)
    assert shapes["blocks.0.norm1.weight"] == (768,)


def test_load_released_layout_strict(tmp_path):
    model = _random_model()
    folder = _write_release(tmp_path / "seed2", model)
    tok = load_tokenizer("image", "released", path=folder, config=SMALL)
    assert isinstance(tok, Seed2ImageTokenizer)
    for k, v in model.state_dict().items():
        assert torch.equal(tok.model.state_dict()[k], v), k
    spec = tok.token_spec
    assert (spec.codebook_size, spec.num_codebooks, spec.frames_per_item) == (64, 1, 32)
    assert spec.prefix == "\U0001F440" and spec.start == "<soim>"
    imgs = torch.rand(3, 3, 40, 52)  # odd, non-square size
    codes = tok.encode(imgs)
    assert codes.shape == (3, 1, 32) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 64
    assert torch.equal(codes, tok.encode(imgs))  # deterministic
    emb = tok.decode_embedding(codes)
    assert emb.shape == (3, 32) and torch.isfinite(emb).all()
    # encode agrees with a direct pass of the model on the preprocessed pixels
    from anygpt.modalities.image_tokenizers import fit_square
    direct = model.encode(preprocess(fit_square(imgs, 28), 28))
    assert torch.equal(codes[:, 0], direct)


def test_released_causal_queries():
    """Query i must not depend on queries after it (SEED's causal Q-Former)."""
    model = _random_model()
    img = model.ln_vision(model.visual_encoder(torch.randn(1, 3, 28, 28)))
    q = torch.randn(1, 32, 48)
    a = model.Qformer.bert(q, img)
    q2 = q.clone()
    q2[:, 20:] += torch.randn(1, 12, 48)
    b = model.Qformer.bert(q2, img)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-5)
    assert not torch.allclose(a[:, 20:], b[:, 20:], atol=1e-3)


def test_released_vit_weights_from_separate_file(tmp_path):
    model = _random_model(1)
    folder = _write_release(tmp_path / "seed2", model, split_vit=True)
    tok = Seed2ImageTokenizer.from_folder(folder, config=SMALL)
    assert torch.equal(tok.model.visual_encoder.pos_embed, model.visual_encoder.pos_embed)
    (folder / "eva_vit_g.pth").unlink()
    with pytest.raises(CheckpointError, match="eva_vit_g.pth"):
        Seed2ImageTokenizer.from_folder(folder, config=SMALL)


def test_released_rejects_wrong_layout(tmp_path):
    model = _random_model()
    state = model.state_dict()
    bad = dict(state)
    bad.pop("distill_image_proj.weight")
    bad["surprise.weight"] = torch.zeros(2)
    (tmp_path / "a").mkdir()
    torch.save(bad, tmp_path / "a" / "seed_quantizer.pt")
    with pytest.raises(CheckpointError, match="missing distill_image_proj.weight.*unexpected surprise.weight"):
        Seed2ImageTokenizer.from_folder(tmp_path / "a", config=SMALL)
    wrong = dict(state)
    wrong["quantize.embedding.weight"] = torch.zeros(65, 32)
    (tmp_path / "b").mkdir()
    torch.save(wrong, tmp_path / "b" / "seed_quantizer.pt")
    with pytest.raises(CheckpointError, match="wrong shapes quantize.embedding.weight"):
        Seed2ImageTokenizer.from_folder(tmp_path / "b", config=SMALL)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "seed_quantizer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        Seed2ImageTokenizer.from_folder(tmp_path / "c", config=SMALL)
    with pytest.raises(CheckpointError, match="not found"):
        Seed2ImageTokenizer.from_folder(tmp_path / "missing", config=SMALL)


def test_released_decode_needs_diffusion_folder(tmp_path):
    tok = Seed2ImageTokenizer.from_folder(_write_release(tmp_path / "s", _random_model()), config=SMALL)
    with pytest.raises(CheckpointError, match="unCLIP"):
        tok.decode(torch.zeros(1, 1, 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, 1, 32\]"):
        tok.decode_embedding(torch.zeros(1, 1, 31, dtype=torch.long))
    with pytest.raises(ValueError, match="0..63"):
        tok.decode_embedding(torch.full((1, 1, 32), 64))


# ---------------------------------------------------------------- decoder wiring (diffusers)
def _tiny_unclip(folder: Path, embed_dim: int) -> Path:
    """A random StableUnCLIPImg2ImgPipeline with tiny sizes, built offline, saved to folder."""
    diffusers = pytest.importorskip("diffusers")
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    torch.manual_seed(0)
    tok_dir = folder.parent / "clip-tok"
    tok_dir.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[ch] = 3 + i
        vocab[ch + "</w>"] = 29 + i
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token="!",
                              model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=2, hidden_size=32, projection_dim=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=64, max_position_embeddings=77))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=embed_dim, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        intermediate_size=37, patch_size=4))
    unet = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), class_embed_type="projection",
        projection_class_embeddings_input_dim=embed_dim * 2, norm_num_groups=16, use_linear_projection=True)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=16, sample_size=32)
    pipe = diffusers.StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
        image_noising_scheduler=diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
        scheduler=diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                          prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1),
        vae=vae)
    pipe.save_pretrained(folder)
    return folder


def test_released_decoder_drives_unclip_pipeline(tmp_path):
    diff = _tiny_unclip(tmp_path / "diffusion_model", SMALL.image_embed_dim)
    folder = _write_release(tmp_path / "seed2", _random_model())
    (folder / "diffusion_model").symlink_to(diff, target_is_directory=True)
    tok = load_tokenizer("image", "released", path=folder, config=SMALL, num_inference_steps=2)
    codes = tok.encode(torch.rand(2, 3, 28, 28))
    imgs = tok.decode(codes)
    assert imgs.shape == (2, 3, 32, 32)  # unet sample 16 x vae factor 2
    assert imgs.min() >= 0 and imgs.max() <= 1 and torch.isfinite(imgs).all()
    # the embedding is what drives the image: another code sequence, another picture
    other = tok.decode((codes + 7) % 64)
    assert not torch.allclose(imgs, other)
    assert torch.allclose(imgs, tok.decode(codes))  # same seed, same picture
