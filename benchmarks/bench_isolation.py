"""Latency of well-formed requests with and without hostile clients (issue 27's isolation run):
N concurrent clients, a share of them sending bad numbers, huge bodies and media bombs, against
a server in its own process on 127.0.0.1. Prints p50 / p95 latency of the well-formed requests
alone and next to the hostile ones, how many answers changed or failed, how many hostile
requests were not refused, and the server's idle and peak RSS.

    python benchmarks/bench_isolation.py                  # 32 clients, a quarter hostile
    python benchmarks/bench_isolation.py --smoke          # 8 clients, seconds (the suite runs it)

The pass/fail version of the same run is tests/bad_inputs/test_server_isolation.py. The clients
share the machine with the server: on 2 cores the figures are for the pair.
"""

from __future__ import annotations

import argparse
import os
import sys

from anygpt.serve.loadgen import ServerProcess, isolation_run, percentile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random-64x2-media", help="a model name or folder (default random-64x2-media)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--hostile-share", type=float, default=0.25, help="share of clients that are hostile (default 0.25)")
    p.add_argument("--requests", type=int, default=2, help="requests per client (default 2)")
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--huge-text-mb", type=float, default=30.0, help="the hostile text body's size (default 30)")
    p.add_argument("--smoke", action="store_true", help="8 clients, 1 request each, a 2 MB text body: seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.clients, args.requests, args.huge_text_mb = 8, 1, 2.0
    with ServerProcess(args.model, timeout=600) as srv:
        run = isolation_run(srv, clients=args.clients, hostile_share=args.hostile_share, per_client=args.requests,
                            max_tokens=args.max_tokens, huge_text_mb=args.huge_text_mb)
    quiet = {o.name: o.answer for o in run.good(run.quiet)}
    loaded = run.good(run.loaded)
    changed = sum(o.problem is not None or o.answer != quiet.get(o.name) for o in loaded)
    hostile = [o for o in run.loaded if o.kind == "hostile"]
    print(f"model {args.model}, {args.clients} clients ({len(hostile)} hostile requests), {args.requests} requests "
          f"each, max_tokens {args.max_tokens}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':<16} {'requests':>8} {'p50':>8} {'p95':>8}")
    for name, outs in (("well-formed only", run.good(run.quiet)), ("with hostile", loaded)):
        lat = [o.latency for o in outs]
        print(f"{name:<16} {len(outs):>8} {percentile(lat, .5):>7.2f}s {percentile(lat, .95):>7.2f}s")
    print(f"well-formed answers changed or failed: {changed}; hostile requests not refused: "
          f"{sum(o.problem is not None for o in hostile)}")
    print(f"server RSS idle {run.idle_rss / 2**20:.0f} MiB, peak under load {run.peak_rss / 2**20:.0f} MiB "
          f"({run.peak_rss / run.idle_rss:.2f}x)")
    return 0 if changed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
