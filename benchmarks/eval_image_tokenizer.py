"""Evaluate an image tokenizer on held-out scenes and emoji; prints markdown tables.

    python benchmarks/eval_image_tokenizer.py --data data/tiny [--tokenizer compact] [--path FOLDER]

1. Scene checker (anygpt.eval.scene_checker): attributes read from the reconstruction vs read
   from the source, per attribute (background, count, positions, colour, shape, size, all).
2. PSNR and SSIM (anygpt.eval.image_metrics) per group: held-out-combination scenes, test
   scenes, emoji (test split, both styles), digits (test split).
3. Linear probes (logistic regression) from codes to attributes: for each of the 9 grid cells
   of a scene, the shape (or none) and the colour (or none); fit on training scenes, scored
   on held-out-combination scenes. Features: bag of codes (histogram over the codebook) and
   the concatenated code vectors (the quantizer's codebook entries, in order). Also emoji
   category from bag of codes (train -> test).
4. Caption retrieval with the semantic head (the contrastive alignment): each held-out scene's
   caption embedded by all-MiniLM-L6-v2 retrieves among the held-out images; R@1, R@5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from anygpt.data import scenes
from anygpt.eval.image_metrics import psnr, ssim
from anygpt.eval.scene_checker import compare_scene, read_scene
from anygpt.modalities import load_tokenizer
from anygpt.train.image_tokenizer import load_split

ATTRS = ("background", "count", "positions", "color", "shape", "size", "exact")


def codes_and_recon(tok, images_u8: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    codes, recs = [], []
    for i in range(0, len(images_u8), batch):
        x = images_u8[i:i + batch].float() / 255
        c = tok.encode(x)
        codes.append(c[:, 0])
        recs.append(tok.decode(c))
    return torch.cat(codes), torch.cat(recs)


def scene_agreement(src: torch.Tensor, rec: torch.Tensor, truth: list[dict]) -> dict:
    agree = {k: [] for k in ATTRS}
    src_ok, rec_ok = [], []
    for s, r, t in zip(src, rec, truth):
        rs, rr = read_scene(s.float() / 255), read_scene(r)
        c = compare_scene(rr, rs)
        for k in ATTRS:
            agree[k].append(bool(c[k]))
        src_ok.append(compare_scene(rs, t)["exact"])
        rec_ok.append(compare_scene(rr, t)["exact"])
    out = {k: float(np.mean(v)) for k, v in agree.items()}
    out["checker_exact_on_source"] = float(np.mean(src_ok))
    out["checker_exact_on_recon"] = float(np.mean(rec_ok))
    return out


def quality(src: torch.Tensor, rec: torch.Tensor) -> tuple[float, float]:
    p = [psnr(s.float() / 255, r) for s, r in zip(src, rec)]
    q = [ssim(s.float() / 255, r) for s, r in zip(src, rec)]
    return float(np.mean(p)), float(np.mean(q))


def cell_labels(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """[N, 9] shape index (0 = none) and colour index (0 = none) per grid cell."""
    shapes = np.zeros((len(records), 9), dtype=int)
    colours = np.zeros((len(records), 9), dtype=int)
    for i, r in enumerate(records):
        for o in r["attributes"]["objects"]:
            cell = scenes.POSITIONS.index(o["position"])
            shapes[i, cell] = 1 + scenes.SHAPES.index(o["shape"])
            colours[i, cell] = 1 + list(scenes.PALETTE).index(o["color"])
    return shapes, colours


def features(tok, codes: torch.Tensor, kind: str) -> np.ndarray:
    if kind == "bag":
        k = tok.codebook_size
        return torch.nn.functional.one_hot(codes, k).sum(1).float().numpy()
    with torch.inference_mode():
        vq = tok.model.quantizer
        vec = torch.nn.functional.embedding(codes, vq._codebook())  # [B, N, codebook_dim]
    return vec.flatten(1).float().numpy()


def probe(xtr, ytr, xte, yte, occupied_only: bool = False) -> float:
    """Logistic regression fit on (xtr, ytr); accuracy on xte (occupied_only: where yte != 0)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(set(ytr.tolist())) < 2:
        pred = np.full_like(yte, ytr[0])
    else:
        sc = StandardScaler().fit(xtr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(max_iter=300, C=0.5).fit(sc.transform(xtr), ytr)
        pred = clf.predict(sc.transform(xte))
    keep = yte != 0 if occupied_only else np.ones_like(yte, dtype=bool)
    return float(np.mean(pred[keep] == yte[keep])) if keep.any() else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--tokenizer", default="compact")
    ap.add_argument("--path", default=None, help="tokenizer folder (default: the shipped weights)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--no-retrieval", action="store_true")
    ap.add_argument("--probes-only", action="store_true", help="skip reconstruction metrics (codes only)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per group (quick check)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    kw = {"path": args.path} if args.path else {}
    tok = load_tokenizer("image", args.tokenizer, **kw)
    size = tok.image_size[0]
    groups = {
        "scenes heldout_combos": load_split(args.data, ("heldout_combos",), size, kinds=("scene",)),
        "scenes test": load_split(args.data, ("test",), size, kinds=("scene",)),
        "emoji test": load_split(args.data, ("test",), size, kinds=("emoji_google", "emoji_noto")),
        "digits test": load_split(args.data, ("test",), size, kinds=("digit",)),
    }
    def cut(g: dict) -> dict:
        if args.limit is None:
            return g
        return {"images": g["images"][:args.limit], "captions": g["captions"][:args.limit],
                "records": g["records"][:args.limit]}
    groups = {k: cut(v) for k, v in groups.items()}
    results: dict = {"tokenizer": args.tokenizer, "groups": {}}
    enc = {}
    for name, g in groups.items():
        if args.probes_only:
            enc[name] = torch.cat([tok.encode(g["images"][i:i + 64].float() / 255)[:, 0]
                                   for i in range(0, len(g["images"]), 64)])
            continue
        codes, rec = codes_and_recon(tok, g["images"])
        enc[name] = codes
        p, s = quality(g["images"], rec)
        entry = {"n": len(g["images"]), "psnr": p, "ssim": s}
        if name.startswith("scenes"):
            entry["agreement"] = scene_agreement(g["images"], rec, [r["attributes"] for r in g["records"]])
        results["groups"][name] = entry
    print(f"\n## Reconstruction ({args.tokenizer}, {tok.image_size[0]}x{tok.image_size[1]}, "
          f"{tok.frames_per_item} codes of {tok.codebook_size})\n")
    print("| group | n | PSNR dB | SSIM |\n|---|---|---|---|")
    for name, e in results["groups"].items():
        print(f"| {name} | {e['n']} | {e['psnr']:.2f} | {e['ssim']:.3f} |")
    print("\n## Scene checker: attributes read from the reconstruction = read from the source\n")
    print("| group | " + " | ".join(ATTRS) + " | checker exact on source / recon vs truth |")
    print("|---" * (len(ATTRS) + 2) + "|")
    for name, e in results["groups"].items():
        if "agreement" in e:
            a = e["agreement"]
            print(f"| {name} | " + " | ".join(f"{100 * a[k]:.1f}%" for k in ATTRS)
                  + f" | {100 * a['checker_exact_on_source']:.1f}% / {100 * a['checker_exact_on_recon']:.1f}% |")
    # probes
    train = cut(load_split(args.data, ("train",), size, kinds=("scene",)))
    tr_codes = torch.cat([tok.encode(train["images"][i:i + 64].float() / 255)[:, 0]
                          for i in range(0, len(train["images"]), 64)])
    te_codes = enc["scenes heldout_combos"]
    ytr_s, ytr_c = cell_labels(train["records"])
    yte_s, yte_c = cell_labels(groups["scenes heldout_combos"]["records"])
    probes = {}
    for feat in ("bag", "vectors"):
        xtr, xte = features(tok, tr_codes, feat), features(tok, te_codes, feat)
        row = {}
        for occ in (False, True):
            tag = "_occupied" if occ else ""
            row["shape" + tag] = float(np.nanmean([probe(xtr, ytr_s[:, c], xte, yte_s[:, c], occ) for c in range(9)]))
            row["colour" + tag] = float(np.nanmean([probe(xtr, ytr_c[:, c], xte, yte_c[:, c], occ) for c in range(9)]))
        probes[feat] = row
    def majority(ytr, yte, occ):
        accs = []
        for c in range(9):
            counts = np.bincount(ytr[:, c], minlength=8)
            if occ:
                counts[0] = -1
            keep = yte[:, c] != 0 if occ else np.ones(len(yte), dtype=bool)
            if keep.any():
                accs.append(np.mean(yte[keep, c] == counts.argmax()))
        return float(np.mean(accs))
    probes["majority"] = {"shape": majority(ytr_s, yte_s, False), "colour": majority(ytr_c, yte_c, False),
                          "shape_occupied": majority(ytr_s, yte_s, True), "colour_occupied": majority(ytr_c, yte_c, True)}
    # emoji category
    etr = cut(load_split(args.data, ("train",), size, kinds=("emoji_google", "emoji_noto")))
    etr_codes = torch.cat([tok.encode(etr["images"][i:i + 64].float() / 255)[:, 0] for i in range(0, len(etr["images"]), 64)])
    cats = sorted({r["attributes"]["category"] for r in etr["records"] + groups["emoji test"]["records"]})
    ye_tr = np.array([cats.index(r["attributes"]["category"]) for r in etr["records"]])
    ye_te = np.array([cats.index(r["attributes"]["category"]) for r in groups["emoji test"]["records"]])
    emoji_cat = probe(features(tok, etr_codes, "bag"), ye_tr, features(tok, enc["emoji test"], "bag"), ye_te)
    emoji_base = float(np.mean(ye_te == np.bincount(ye_tr).argmax()))
    results["probes"] = {"scene_cells": probes, "emoji_category": {"bag": emoji_cat, "majority": emoji_base}}
    print("\n## Linear probes from codes (fit on train scenes, scored on held-out-combination scenes)\n")
    print("| features | shape per cell (9 cells, 'none' included) | colour per cell | shape, occupied cells | colour, occupied cells |")
    print("|---|---|---|---|---|")
    for feat, v in probes.items():
        print(f"| {feat} | {100 * v['shape']:.1f}% | {100 * v['colour']:.1f}% | {100 * v['shape_occupied']:.1f}% "
              f"| {100 * v['colour_occupied']:.1f}% |")
    print(f"\nemoji category (bag of codes, train -> test): {100 * emoji_cat:.1f}% (majority {100 * emoji_base:.1f}%)")
    if not args.no_retrieval and hasattr(tok, "semantic_embedding"):
        from anygpt.train.image_tokenizer import embed_captions

        g = groups["scenes heldout_combos"]
        txt = embed_captions(g["captions"])
        img = tok.semantic_embedding(te_codes.unsqueeze(1))
        sim = txt @ img.t()
        ranks = (sim > sim.diag()[:, None]).sum(1)
        r1, r5 = float((ranks < 1).float().mean()), float((ranks < 5).float().mean())
        results["retrieval"] = {"r1": r1, "r5": r5, "n": len(ranks)}
        print(f"\ncaption -> image retrieval among {len(ranks)} held-out scenes: R@1 {100 * r1:.1f}%, "
              f"R@5 {100 * r5:.1f}% (chance R@1 {100 / len(ranks):.2f}%)")
    results["seconds"] = time.time() - t0
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n({results['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
