"""CLIP score code path with a tiny random CLIP saved locally (no real weights ship here)."""

import json

import pytest

from PIL import Image


def _tiny_clip(d):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8)
    CLIPModel(cfg).save_pretrained(d)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=proc, tokenizer=tok).save_pretrained(d)
    return d


def test_text_to_image_on_coco_layout_with_local_clip(tmp_path):
    from anygpt.eval.cli import main

    clip = _tiny_clip(tmp_path / "clip")
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    images = []
    for k, colour in enumerate(((200, 0, 0), (0, 0, 200))):
        name = f"COCO_val2014_{k}.jpg"
        Image.new("RGB", (48, 40), colour).save(root / "val2014" / name)
        images.append({"filepath": "val2014", "filename": name, "split": "test", "cocoid": k,
                       "sentences": [{"raw": f"a plain picture number {k}"}]})
    (root / "dataset_coco.json").write_text(json.dumps({"images": images}))
    out = tmp_path / "r.json"
    assert main(["text-to-image", "--benchmark", "coco", "--root", str(root), "--clip-model", str(clip),
                 "--out-file", str(out), "--no-progress"]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 2 and -1 <= r["summary"]["clip_score"] <= 1
    assert all(-1 <= i["clip_score"] <= 1 for i in r["items"])


def test_clip_scores_are_the_cosine_of_each_pair(tmp_path):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from anygpt.eval.embed_scores import clip_scores

    torch.manual_seed(0)
    clip = _tiny_clip(tmp_path / "clip")
    paths = []
    for k, colour in enumerate(((200, 0, 0), (0, 0, 200))):
        paths.append(tmp_path / f"{k}.png")
        Image.new("RGB", (40, 40), colour).save(paths[-1])
    captions = ["a red square", "a blue square"]
    scores = clip_scores(clip, paths, captions)
    model, proc = CLIPModel.from_pretrained(clip).eval(), CLIPProcessor.from_pretrained(clip)
    expected = []
    for p, c in zip(paths, captions):
        batch = proc(text=[c], images=[Image.open(p).convert("RGB")], return_tensors="pt", padding=True)
        with torch.no_grad():
            ie = torch.nn.functional.normalize(model.get_image_features(pixel_values=batch["pixel_values"]), dim=-1)
            te = torch.nn.functional.normalize(model.get_text_features(input_ids=batch["input_ids"]), dim=-1)
        expected.append(float((ie * te).sum()))
    assert len(scores) == 2 and all(-1 <= s <= 1 for s in scores)
    assert scores == [pytest.approx(e, abs=1e-5) for e in expected]
    assert clip_scores(clip, paths[::-1], captions) != scores  # each image is scored against its own caption
