"""Cost of the segment constraint: tokens/s of a random tiny LLaMA with the release's vocabulary
(49,420-style layout over our BPE), constrained vs unconstrained, batch 1 and 8.

    python benchmarks/bench_constrained_generation.py
    python benchmarks/bench_constrained_generation.py --smoke     # tiny sizes, seconds (the test suite runs it)
"""

import argparse
import time

import torch

from anygpt.lm.generation import GenerationSettings, generate_ids
from anygpt.lm.tiny import random_tiny


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="hidden 32 x 1 layer, 8 new tokens: checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.threads = 1
    torch.set_num_threads(args.threads)
    size = dict(hidden=32, layers=1) if args.smoke else dict(hidden=128, layers=4)
    new = 8 if args.smoke else 256
    model, tok, layout = random_tiny(seed=0, **size)
    rows = []
    for batch in (1, 8):
        prompt = torch.randint(3, 500, (batch, 32))
        for constrained in (False, True):
            s = GenerationSettings(max_new_tokens=new, constrained=constrained)
            generate_ids(model, prompt, torch.ones_like(prompt), layout, s, stop_ids=[], pad_id=0, seed=0)  # warm-up
            t = time.perf_counter()
            out = generate_ids(model, prompt, torch.ones_like(prompt), layout, s, stop_ids=[], pad_id=0, seed=1)
            dt = time.perf_counter() - t
            rows.append((batch, constrained, out.numel() / dt, 1000 * dt / out.shape[1]))
    print(f"vocab {len(tok)}, model hidden {size['hidden']} x {size['layers']} layers, {new} new tokens")
    print(f"{'batch':>5} {'constrained':>11} {'tokens/s':>10} {'ms/step':>8}")
    for b, c, tps, ms in rows:
        print(f"{b:>5} {str(c):>11} {tps:>10.0f} {ms:>8.2f}")


if __name__ == "__main__":
    main()
