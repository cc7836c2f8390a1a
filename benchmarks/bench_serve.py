"""Serving under load: 1, 8 and 32 concurrent streaming clients against `anygpt serve` on
loopback. Prints requests/s, completion tokens/s, time to first token (p50 / p90), time to
first audio (--speech), the largest engine batch, rejected requests and the server's peak RSS
at each level.

    python benchmarks/bench_serve.py                          # random model of anygpt-tiny's shape
    python benchmarks/bench_serve.py --model anygpt-tiny      # the shipped model
    python benchmarks/bench_serve.py --speech                 # spoken replies, streamed as audio
    python benchmarks/bench_serve.py --smoke                  # a random hidden-64 model, 1 and 2 clients, 4 tokens
    python benchmarks/bench_serve.py --mix                    # short text TTFT next to long music replies,
                                                              # continuous batching vs whole batches
    python benchmarks/bench_serve.py --mix --spread 2         # the same, first text requests spread over 2 s
    python benchmarks/bench_serve.py --mix --schedulers continuous,serial   # with and without the intake thread

The server is a separate process (`python -m anygpt.cli serve`, bound to 127.0.0.1 and a free
port) so that its RSS is its own; its memory is sampled every 20 ms while each level runs. The
clients (httpx, asyncio, one process) share the machine with it: on 2 cores the figures are
for the pair, not the server alone. Each client sends --requests requests one after another,
each a short question with max_tokens=--max-tokens, seed fixed per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from anygpt.lm.backends import BACKENDS

HERE = Path(__file__).resolve().parent


def save_random_model(folder: Path, name: str = "random") -> Path:
    """The random model of bench_generation ('random': anygpt-tiny's shape; 'smoke': hidden 64,
    no media tokenizers), written as a model folder that names the shipped tiny tokenizers it
    uses (so the server loads it like any other)."""
    sys.path.insert(0, str(HERE))
    from bench_generation import build_model

    model = build_model(name)
    model.tokenizer_entries = {m: {"loader": "compact"} for m in model.tokenizers}
    model.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler:
    """Peak resident memory of a process, sampled from /proc while the block runs."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every)

    def __enter__(self):
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    """Stream one completion -> {"ttft", "tta", "tokens", "status"}."""
    t0 = time.perf_counter()
    out = {"ttft": None, "tta": None, "tokens": 0, "status": None}
    async with client.stream("POST", url, json=body) as r:
        out["status"] = r.status_code
        if r.status_code != 200:
            await r.aread()
            return out
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                out["status"] = chunk["error"].get("code")
                break
            if chunk.get("usage"):
                out["tokens"] = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {})
                now = time.perf_counter() - t0
                if delta.get("content") and out["ttft"] is None:
                    out["ttft"] = now
                if (delta.get("audio") or {}).get("data") and out["tta"] is None:
                    out["tta"] = now
    return out


async def run_level(base: str, clients: int, requests: int, args) -> tuple[list[dict], float]:
    url = base + "/v1/chat/completions"
    words = "tell me about the weather the sea music pictures a cat a house the city at night".split()

    def body(c: int, i: int) -> dict:
        question = " ".join(words[(c + i + k) % len(words)] for k in range(6 + (c * 7 + i) % 20))
        b = {"messages": [{"role": "user", "content": question}], "max_tokens": args.max_tokens, "seed": c * 1000 + i,
             "stream": True, "stream_options": {"include_usage": True}}
        if args.speech:
            b.update(modalities=["text", "audio"], audio={"voice": "default", "format": "pcm16"})
        return b

    async def client_loop(c: int, client: httpx.AsyncClient) -> list[dict]:
        return [await one_request(client, url, body(c, i)) for i in range(requests)]

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t = time.perf_counter()
        results = await asyncio.gather(*(client_loop(c, client) for c in range(clients)))
        wall = time.perf_counter() - t
    return [r for rs in results for r in rs], wall


def model_label(args) -> str:
    """The model as the tables' header names it: --model, the engine, and whether it runs int8."""
    return f"{args.model} (engine {args.engine}{', int8' if args.int8 else ''})"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random", help="'random' (anygpt-tiny's shape), a model name or folder")
    p.add_argument("--clients", default="1,8,32", help="concurrency levels (default 1,8,32)")
    p.add_argument("--requests", type=int, default=2, help="requests per client at each level (default 2)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--speech", action="store_true", help="ask for spoken replies (text + streamed audio)")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--engine", default="engine", choices=BACKENDS,
                   help="the server's decoder backend (anygpt serve --engine; default engine)")
    p.add_argument("--int8", action="store_true", help="the server decodes with int8 weights (anygpt serve --int8)")
    p.add_argument("--smoke", action="store_true", help="a random hidden-64 model, 1 and 2 clients, 1 request of "
                                                        "4 tokens each (with --mix: the random model of anygpt-tiny's "
                                                        "shape, 2 clients, 8 music tokens): checks the script runs")
    p.add_argument("--mix", action="store_true",
                   help="TTFT of short text requests while long music replies run (a quarter of the clients), "
                        "for each scheduler in --schedulers, at each --clients level and with 1 client")
    p.add_argument("--schedulers", default="continuous,whole",
                   help="with --mix, a comma list of: 'continuous' (requests join the running batch, "
                        "prefilled on the intake thread), 'serial' (the same, prefilled on the decode thread "
                        "between two steps) and 'whole' (whole batches run to their end: the scheduler "
                        "before issue 25)")
    p.add_argument("--music-tokens", type=int, default=1000, help="with --mix: max_tokens of a music reply")
    p.add_argument("--spread", type=float, default=0.0,
                   help="with --mix: seconds over which the text clients send their first request, evenly "
                        "(default 0: all at once, a burst)")
    args = p.parse_args(argv)
    unknown = set(args.schedulers.split(",")) - {"continuous", "serial", "whole"}
    if unknown:
        p.error(f"--schedulers: {', '.join(sorted(unknown))}: not one of continuous, serial, whole")
    if args.smoke and args.mix:  # music needs a model with a music tokenizer: the random one of tiny's shape
        args.model, args.clients, args.requests, args.max_tokens, args.music_tokens = "random", "2", 1, 2, 8
    elif args.smoke:
        args.model, args.clients, args.requests, args.max_tokens, args.speech = "smoke", "1,2", 1, 4, False
    if args.mix:
        return run_mix(args)
    levels = [int(x) for x in args.clients.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model = str(save_random_model(Path(tmp) / f"{args.model}-model", args.model)) \
            if args.model in ("random", "smoke") else args.model
        port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, "-m", "anygpt.cli", "serve", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--max-batch", str(args.max_batch), "--max-queue", str(max(levels) * 2),
               "--threads", str(args.threads), "--timeout", "900", "--engine", args.engine] + (["--int8"] if args.int8 else [])
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                if server.poll() is not None:
                    print(server.stderr.read(), file=sys.stderr)
                    return 1
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start in 300 s")
                time.sleep(0.3)
            idle_rss = RssSampler(server.pid)._rss()
            asyncio.run(run_level(base, 1, 1, args))  # warm-up: first-call costs out of the table
            load = os.getloadavg()[0]
            print(f"model {model_label(args)}, max_tokens {args.max_tokens}, max_batch {args.max_batch}, server threads "
                  f"{args.threads}, {os.cpu_count()} cores, load average {load:.2f} before; idle server RSS "
                  f"{idle_rss / 2**20:.0f} MiB")
            head = (f"{'clients':>7} {'requests':>8} {'ok':>4} {'rejected':>8} {'req/s':>7} {'tok/s':>7} "
                    f"{'TTFT p50':>9} {'TTFT p90':>9}" + (f" {'audio p50':>9}" if args.speech else "")
                    + f" {'batch':>5} {'peak RSS':>9}")
            print(head)
            for clients in levels:
                with RssSampler(server.pid) as rss:
                    results, wall = asyncio.run(run_level(base, clients, args.requests, args))
                health = httpx.get(base + "/health").json()
                ok = [r for r in results if r["status"] == 200]
                ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
                tta = [r["tta"] for r in ok if r["tta"] is not None]
                tokens = sum(r["tokens"] for r in ok)
                line = (f"{clients:>7} {len(results):>8} {len(ok):>4} {len(results) - len(ok):>8} "
                        f"{len(ok) / wall:>7.2f} {tokens / wall:>7.1f} {pct(ttft, .5):>8.2f}s {pct(ttft, .9):>8.2f}s"
                        + (f" {pct(tta, .5):>8.2f}s" if args.speech else "")
                        + f" {health['largest_batch']:>5} {rss.peak / 2**20:>6.0f} MiB")
                print(line, flush=True)
            print(f"load average {os.getloadavg()[0]:.2f} after. batch: the largest engine batch so far; "
                  "rejected: 503 (queue full) or errors")
        finally:
            server.terminate()
            server.wait(30)
    return 0


# ----------------------------------------------------------------------------- --mix
def music_clients(clients: int) -> int:
    """--mix: how many of `clients` ask for a long music reply (a quarter, at least one of 2 or more)."""
    return max(1, clients // 4) if clients > 1 else 0


async def mix_level(base: str, clients: int, args) -> list[dict]:
    """A quarter of the clients (at least one when clients > 1) ask for a long music reply
    first; once their replies run, the others each send --requests short text questions,
    streamed, one after another (the first ones together, or evenly over --spread seconds).
    -> the text requests' outcomes (one_request's dicts)."""
    url = base + "/v1/chat/completions"
    n_music = music_clients(clients)
    started = asyncio.Event()

    async def music(c: int, client: httpx.AsyncClient) -> None:
        body = {"messages": [{"role": "user", "content": "Play a long piece."}], "modalities": ["music"],
                "max_tokens": args.music_tokens, "seed": c, "stream": True}
        async with client.stream("POST", url, json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    started.set()  # the music reply is running (its first chunk came)

    async def text(c: int, client: httpx.AsyncClient) -> list[dict]:
        if n_music:
            await started.wait()
            await asyncio.sleep(0.2)
        # --spread: the text clients' first requests evenly over that many seconds, not at once
        await asyncio.sleep(args.spread * (c - n_music) / max(1, clients - n_music))
        out = []
        for i in range(args.requests):
            body = {"messages": [{"role": "user", "content": f"Say hello number {c}."}], "max_tokens": args.max_tokens,
                    "seed": c * 1000 + i, "stream": True, "stream_options": {"include_usage": True}}
            out.append(await one_request(client, url, body))
        return out

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        background = [asyncio.create_task(music(c, client)) for c in range(n_music)]
        results = await asyncio.gather(*(text(c, client) for c in range(n_music, clients)))
        await asyncio.gather(*background)
    return [r for rs in results for r in rs]


def run_mix(args) -> int:
    """--mix: TTFT p50 / p95 of short text requests next to long music replies, per scheduler."""
    sys.path.insert(0, str(HERE.parent / "src"))
    from anygpt.serve.loadgen import ServerProcess

    levels = [int(x) for x in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model = str(save_random_model(Path(tmp) / "random-tiny-shape")) if args.model == "random" else args.model
        print(f"model {model_label(args)}, text max_tokens {args.max_tokens}, music max_tokens {args.music_tokens}, "
              f"first text requests over {args.spread:g} s, max_batch {args.max_batch}, {args.requests} text requests "
              f"per client, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before")
        print(f"{'scheduler':>10} {'clients':>7} {'music':>5} {'text ok':>7} {'TTFT p50':>9} {'TTFT p95':>9} {'x 1-client p95':>14}")
        for scheduler in args.schedulers.split(","):
            config = {"max_batch": args.max_batch, "max_queue": 4 * max(levels), "timeout": 900.0,
                      "continuous": scheduler != "whole", "intake_thread": scheduler == "continuous",
                      "quantize": "int8" if args.int8 else None, "engine": args.engine}
            with ServerProcess(model, threads=args.threads, **config) as srv:
                asyncio.run(mix_level(srv.url, 1, argparse.Namespace(**{**vars(args), "requests": 1})))  # warm-up
                base_p95 = None
                for clients in [1] + [c for c in levels if c != 1]:  # 1 client first: the baseline
                    # the baseline sends as many requests, one after another, as the largest level's
                    # text clients do together, so that its p95 is one of many, not a maximum of 2
                    most = max(levels) - music_clients(max(levels))
                    level = argparse.Namespace(**{**vars(args), "requests": args.requests * most}) if clients == 1 else args
                    results = asyncio.run(mix_level(srv.url, clients, level))
                    ttft = [r["ttft"] for r in results if r["status"] == 200 and r["ttft"] is not None]
                    p95 = pct(ttft, .95)
                    base_p95 = p95 if clients == 1 else base_p95
                    music = music_clients(clients)
                    print(f"{scheduler:>10} {clients:>7} {music:>5} {len(ttft):>7} {pct(ttft, .5):>8.3f}s {p95:>8.3f}s "
                          f"{p95 / base_p95:>13.1f}x", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} after. TTFT: time to the first text of a short request "
              "(streamed); music: clients with a long music reply running meanwhile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
