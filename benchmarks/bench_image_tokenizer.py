"""Image tokenizer speed: encode and decode images/s at batch 32 (never run in tests).

    python benchmarks/bench_image_tokenizer.py [--tokenizer compact] [--threads 1 2] [--batch 32]

Prints a markdown table. The tiny tokenizer runs under bf16 autocast (as shipped) and in float32.
"""

from __future__ import annotations

import argparse
import time

import torch

from anygpt.modalities import load_tokenizer


def rate(fn, n_items: int, min_seconds: float = 3.0) -> float:
    fn()  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and reps >= 3:
            return n_items * reps / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default="compact")
    ap.add_argument("--path", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    tok = load_tokenizer("image", args.tokenizer, **({"path": args.path} if args.path else {}))
    h, w = tok.image_size
    x = torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    codes = tok.encode(x)
    print(f"\n{args.tokenizer}: {h}x{w}, batch {args.batch}, torch {torch.__version__}\n")
    print("| threads | precision | encode img/s | decode img/s |\n|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for bf16 in ((True, False) if hasattr(tok, "bf16") else (False,)):
            if hasattr(tok, "bf16"):
                tok.bf16 = bf16
            e = rate(lambda: tok.encode(x), args.batch)
            d = rate(lambda: tok.decode(codes), args.batch)
            print(f"| {threads} | {'bf16' if bf16 else 'fp32'} | {e:.0f} | {d:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
