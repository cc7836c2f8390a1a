"""Image tokenizer speed: encode and decode images/s at batch 32 (never run in tests).

    python benchmarks/bench_image_tokenizer.py [--tokenizer compact] [--threads 1 2] [--batch 32]
    python benchmarks/bench_image_tokenizer.py --smoke     # batch 2, 1 thread, seconds (the test suite runs it)

Prints a markdown table. The tiny tokenizer runs under bf16 autocast (as shipped) and in float32.
"""

from __future__ import annotations

import argparse
import time

import torch

from anygpt.modalities import load_tokenizer


def rate(fn, n_items: int, min_seconds: float = 3.0, min_reps: int = 3) -> tuple[float, float]:
    """-> (items/s over all calls, items/s of the fastest call): on a shared host (other tenants'
    steal time shows in /proc/stat) the fastest call is the steadier figure of what the code can do."""
    fn()  # warm-up
    times, t0 = [], time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - t0 >= min_seconds and len(times) >= min_reps:
            return n_items * len(times) / sum(times), n_items / min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default="compact")
    ap.add_argument("--path", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--smoke", action="store_true", help="batch 2, 1 thread, one timed run: checks the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch, args.threads = 2, [1]
    timing = dict(min_seconds=0.0, min_reps=1) if args.smoke else {}
    tok = load_tokenizer("image", args.tokenizer, **({"path": args.path} if args.path else {}))
    h, w = tok.image_size
    x = torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    codes = tok.encode(x)
    print(f"\n{args.tokenizer}: {h}x{w}, batch {args.batch}, torch {torch.__version__}\n")
    print("| threads | precision | encode img/s: mean / fastest batch | decode img/s: mean / fastest batch |\n"
          "|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for bf16 in ((True, False) if hasattr(tok, "bf16") else (False,)):
            if hasattr(tok, "bf16"):
                tok.bf16 = bf16
            e = rate(lambda: tok.encode(x), args.batch, **timing)
            d = rate(lambda: tok.decode(codes), args.batch, **timing)
            print(f"| {threads} | {'bf16' if bf16 else 'fp32'} | {e[0]:.0f} / {e[1]:.0f} | {d[0]:.0f} / {d[1]:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
