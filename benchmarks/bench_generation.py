"""Generation speed: HF generate vs the engine vs the engine with int8, one run, same model,
same prompts, constrained sampling; on the machine as it is and next to one busy process.
Also: int8's per-token agreement with fp32 greedy, the memory-bandwidth limit on tokens/s
at batch 1, the time to first audio of a speech reply, and (--sweep) threads x OpenMP wait
policy next to a busy process.

    python benchmarks/bench_generation.py                         # random model of anygpt-tiny's shape
    python benchmarks/bench_generation.py --model anygpt-tiny     # the shipped model
    python benchmarks/bench_generation.py --sweep                 # + threads / OMP_WAIT_POLICY table
    python benchmarks/bench_generation.py --json out.json         # + the figures as JSON
    python benchmarks/bench_generation.py --smoke                 # tiny sizes, seconds (the test suite runs it)

Decoders: HF generate (the reference), the engine (torch) fp32 and int8, the native engine
(int8, its forward in anygpt's own C++; a row when a C++ compiler is there), the engine on ONNX
Runtime fp32 and int8 (anygpt.lm.onnx_engine; rows when onnxruntime is installed) and on
llama.cpp fp32 and q8_0 (anygpt.lm.llamacpp_engine; rows when llama-cpp-python is installed). x_hf_batch1 and
x_hf_batch8 in the JSON: the fastest decoder's tokens/s over HF generate's, same run.

The default model is a random LLaMA of the shape anygpt-tiny is expected to have: hidden 384,
6 layers, 6 heads, MLP 1024, untied head, 4,608 positions, our layout over a 4,000-entry BPE
plus the compact tokenizers' image (1,024), speech (512) and music (4 x 1,024) codes, so the
segment constraint runs as it will on the real model. Run it on a quiet machine for the
figures that go into docs; the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

from anygpt.eval.report import write_json
from anygpt.lm.backends import BackendUnavailable

BUSY_CODE = """
import time, torch
torch.set_num_threads(1)
a = torch.randn(384, 384)
end = time.time() + {seconds}
while time.time() < end:
    a = torch.tanh(a @ a)
"""


def synthetic_texts(n_words: int = 40000, seed: int = 0) -> list[str]:
    """Seeded pseudo-words: enough distinct pairs for a 4,000-entry BPE (the built-in texts
    hold about 800)."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [26 - i for i in range(26)]
    words = ["".join(rng.choices(letters, weights, k=rng.randint(2, 9))) for _ in range(n_words)]
    return [" ".join(words[i:i + 12]) + "." for i in range(0, n_words, 12)]


def build_model(name: str):
    """-> AnyGPT (random one of anygpt-tiny's shape for name 'random'; 'smoke': a random
    hidden-64 x 2-layer model in the release's layout, no media tokenizers)."""
    from anygpt.modalities import load_tokenizer
    from anygpt.model import AnyGPT

    if name == "smoke":
        from anygpt.lm.tiny import random_tiny

        return AnyGPT(*random_tiny(seed=0))
    if name != "random":
        from anygpt.loaders import load_model

        return load_model(name)
    from anygpt.lm.tiny import builtin_texts, random_tiny

    tokenizers = {m: load_tokenizer(m, "compact") for m in ("image", "speech", "music")}
    lm, tok, layout = random_tiny([t.token_spec for t in tokenizers.values()], seed=0, text_vocab=4000,
                                  texts=builtin_texts() + synthetic_texts(), hidden=384, layers=6, heads=6,
                                  intermediate=1024, max_positions=4608)
    return AnyGPT(lm, tok, layout, tokenizers=tokenizers)


def prompts(model, n: int = 8, seed: int = 0) -> list[torch.Tensor]:
    """n chat prompts of mixed lengths (plain text questions of 3..40 words)."""
    from anygpt.conversation import Conversation

    rng = random.Random(seed)
    words = synthetic_texts(2000, seed=1)[0].split() * 20
    out = []
    for _ in range(n):
        c = Conversation()
        c.add_user(" ".join(rng.sample(words, rng.randint(3, 40))))
        request, _ = model.decoder_request(model.template.prompt(c.turns), _settings(8))
        out.append(torch.as_tensor(request.prompt))
    return out


def _settings(new: int, **kw):
    from anygpt.lm.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=new, **{"do_sample": True, **kw})  # constrained by default


def run_hf(model, batch, settings) -> int:
    from anygpt.lm.generation import generate_ids

    width = max(p.numel() for p in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(batch):
        ids[i, width - p.numel():], mask[i, width - p.numel():] = p, 1
    new = generate_ids(model.lm, ids, mask, model.layout, settings, stop_ids=[], pad_id=0, seed=0)
    return new.numel()


def run_engine(engine, batch, settings) -> int:
    from anygpt.lm.engine import Request

    return sum(len(r.ids) for r in engine.generate([Request(p, settings, generator=i) for i, p in enumerate(batch)]))


CPU_RATE: dict = {}  # fn -> tokens per CPU second of its best run (see tokens_per_second)


def tokens_per_second(fn, repeats: int) -> float:
    """Best of `repeats` timed runs after one warm-up (the machine is shared: the best run is
    the one least disturbed). Also records tokens per second of this process's CPU time in
    CPU_RATE[fn]: on a busy machine that is steadier than wall time (every decoder here runs
    on the calling thread with 1 thread)."""
    fn()
    best = best_cpu = 0.0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        n = fn()
        best = max(best, n / (time.perf_counter() - t))
        best_cpu = max(best_cpu, n / max(time.process_time() - c, 1e-9))
    CPU_RATE[fn] = best_cpu
    return best


class Busy:
    """One busy 1-thread torch process for the duration of a `with` block (bounded in time)."""

    def __init__(self, seconds: int = 900):
        self.seconds = seconds

    def __enter__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE.format(seconds=self.seconds)], env=env)
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def read_bandwidth(mbytes: int = 256) -> float:
    """Single-thread read bandwidth in bytes/s: sum over a `mbytes` MB buffer, best of 5."""
    a = torch.ones(mbytes * 1024 * 1024 // 4)
    a.sum()
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.numel() * 4 / (time.perf_counter() - t))
    return best


def int8_agreement(model, batch, new: int) -> float:
    """Teacher-forced per-token agreement: along fp32 greedy replies, the share of positions
    where int8's argmax equals fp32's."""
    from anygpt.lm.engine import Request
    from anygpt.lm.llama_static import LeanLlama
    from anygpt.lm.quantize import quantize_lean

    greedy = _settings(new, do_sample=False)
    fp32 = LeanLlama(model.lm)
    int8 = LeanLlama(model.lm)
    quantize_lean(int8, "int8")
    replies = model.engine().generate([Request(p, greedy) for p in batch])
    same = total = 0
    for p, r in zip(batch, replies):
        seq = torch.cat([p, torch.tensor(r.ids)])[None]
        pos = torch.arange(seq.shape[1])[None]
        a = fp32(seq, pos, fp32.new_cache(1, seq.shape[1]), last_only=False)[0, p.numel() - 1:-1]
        b = int8(seq, pos, int8.new_cache(1, seq.shape[1]), last_only=False)[0, p.numel() - 1:-1]
        same += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
    return same / total


def greedy_parity(model, engines: dict, batch, new: int) -> dict[str, tuple[int, int]]:
    """Greedy replies of every engine vs HF generate's, batch 1 each, no stop ids ->
    {engine: (tokens before the first one that differs from HF's, summed over prompts; HF's tokens)}."""
    from anygpt.lm.engine import Request

    greedy = _settings(new, do_sample=False)
    want = [_hf_ids(model, p, greedy) for p in batch]
    out = {}
    for name, e in engines.items():
        got = [e.generate([Request(p, greedy)])[0].ids for p in batch]
        same = [next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), min(len(w), len(g)))
                for w, g in zip(want, got)]
        out[name] = (sum(same), sum(len(w) for w in want))
    return out


def _hf_ids(model, prompt, settings) -> list[int]:
    from anygpt.lm.generation import generate_ids

    ids = prompt[None]
    return generate_ids(model.lm, ids, torch.ones_like(ids), model.layout, settings, stop_ids=[], pad_id=0)[0].tolist()


def first_audio(model, quantize: str | None, new: int = 150, **audio) -> tuple[float, float, float]:
    """A speech reply (forced speech segment) streamed through ReplyStreamer -> seconds from the
    first speech code to the first audio chunk, from the call to the first audio chunk, and the
    whole call."""
    from anygpt.conversation import Conversation
    from anygpt.lm.streaming import ReplyStreamer
    from anygpt.modalities.speech_streaming import AudioChunk

    marks: dict[str, float] = {}

    class Timed(ReplyStreamer):
        def put(self, ids):
            if "code" not in marks and self.seg is not None:
                marks["code"] = time.perf_counter()
            super().put(ids)

    def on_event(ev):
        if isinstance(ev, AudioChunk) and "audio" not in marks:
            marks["audio"] = time.perf_counter()

    c = Conversation()
    c.add_user("Say something.")
    t0 = time.perf_counter()
    model.generate(c, settings=_settings(new), force_modality="speech", seed=0, quantize=quantize,
                   streamer=Timed(model, on_event=on_event, **audio))
    t1 = time.perf_counter()
    return marks["audio"] - marks["code"], marks["audio"] - t0, t1 - t0


def compile_probe(model, batch8, settings, repeats: int) -> list[tuple[int, float, float]]:
    """The engine (fp32) with its decode step eager vs torch.compile'd (dynamic shapes), end to
    end -> [(batch, eager tok/s, compiled tok/s)]; compiling happens in the warm-up runs."""
    engine = model.engine()
    eager = engine.decode_step
    compiled = torch.compile(eager, dynamic=True)
    rows = []
    for bsz in (1, 8):
        cells = []
        for step in (eager, compiled):
            engine.decode_step = step
            cells.append(tokens_per_second(lambda: run_engine(engine, batch8[:bsz], settings), repeats))
        rows.append((bsz, *cells))
    engine.decode_step = eager
    return rows


def sweep(args) -> None:
    """Engine b1 tokens/s for threads x OMP_WAIT_POLICY, quiet and next to a busy process;
    each cell is a fresh process (the wait policy is read when OpenMP starts)."""
    print("\nthreads x OpenMP wait policy, engine fp32 batch 1 (tokens/s; each cell a fresh process)")
    print(f"{'threads':>7} {'OMP_WAIT_POLICY':>15} {'quiet':>8} {'busy':>8}")
    for threads in (1, 2):
        for policy in ("ACTIVE", "PASSIVE"):
            row = []
            for busy in (False, True):
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                           OMP_WAIT_POLICY=policy)
                cmd = [sys.executable, __file__, "--model", args.model, "--new-tokens", str(args.new_tokens),
                       "--repeats", str(args.repeats), "--probe-threads", str(threads)]
                if busy:
                    with Busy():
                        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                else:
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                row.append(float(out.strip().splitlines()[-1]))
            print(f"{threads:>7} {policy:>15} {row[0]:>8.0f} {row[1]:>8.0f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random", help="NAME_OR_DIR (anygpt-tiny, a folder) or 'random' (default)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the best is kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every decoder")
    p.add_argument("--no-busy", action="store_true", help="skip the next-to-a-busy-process column")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    p.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp rows")
    p.add_argument("--sweep", action="store_true", help="also the threads x OMP_WAIT_POLICY table")
    p.add_argument("--compile", action="store_true", help="also the engine with a torch.compile'd decode step")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here as JSON")
    p.add_argument("--smoke", action="store_true",
                   help="a random hidden-64 model, 8 new tokens, 1 repeat, no busy column: checks the script runs")
    p.add_argument("--probe-threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.new_tokens, args.repeats, args.no_busy = "smoke", 8, 1, True
    torch.manual_seed(0)
    model = build_model(args.model)
    batch8 = prompts(model)
    settings = _settings(args.new_tokens)
    if args.probe_threads:  # one cell of --sweep, in its own process
        torch.set_num_threads(args.probe_threads)
        engine = model.engine()
        engine.threads = args.probe_threads
        print(tokens_per_second(lambda: run_engine(engine, batch8[:1], settings), args.repeats))
        return
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    lm = model.lm
    n_params = sum(p.numel() for p in lm.parameters())
    cfg = lm.config
    print(f"model {args.model}: {n_params / 1e6:.1f}M parameters, hidden {cfg.hidden_size} x {cfg.num_hidden_layers} "
          f"layers, {cfg.num_attention_heads} heads, MLP {cfg.intermediate_size}, vocab {cfg.vocab_size}")
    print(f"prompts: 8 of {sorted(p.numel() for p in batch8)} tokens (batch 1: the first, {batch8[0].numel()}); "
          f"{args.new_tokens} new tokens each, constrained sampling; {args.threads} thread(s); best of {args.repeats}")
    engines = {"engine": model.engine(), "engine int8": model.engine(quantize="int8")}
    try:
        engines["native int8"] = model.engine(backend="native", quantize="int8")
    except BackendUnavailable as e:
        print(f"native: not measured ({e})")
    for backend, int8_name in (("onnx", "onnx int8"), ("llamacpp", "llamacpp q8_0")):
        if getattr(args, f"no_{backend}"):
            continue
        t = time.perf_counter()
        try:
            engines[backend] = model.engine(backend=backend)
            engines[int8_name] = model.engine(backend=backend, quantize="int8")
            print(f"{backend}: decoders exported or found in the cache and loaded in {time.perf_counter() - t:.1f} s "
                  f"({engines[backend].model.path.parent})")
        except BackendUnavailable as e:
            print(f"{backend}: not measured ({e})")
    for e in engines.values():
        e.threads = args.threads
    decoders = {"HF generate": lambda b: run_hf(model, b, settings)}
    decoders.update({name: (lambda b, e=e: run_engine(e, b, settings)) for name, e in engines.items()})
    conditions = ["quiet"] + ([] if args.no_busy else ["busy"])
    table: dict[tuple[str, int, str], float] = {}
    cpu_table: dict[tuple[str, int], float] = {}
    for cond in conditions:
        ctx = Busy() if cond == "busy" else _Nothing()
        with ctx:
            for name, fn in decoders.items():
                for bsz in (1, 8):
                    cell = lambda fn=fn, bsz=bsz: fn(batch8[:bsz])  # noqa: E731
                    table[name, bsz, cond] = tokens_per_second(cell, args.repeats)
                    if cond == "quiet":
                        cpu_table[name, bsz] = CPU_RATE[cell]
    print(f"\n{'decoder':<14} {'batch':>5} " + " ".join(f"{c + ' tok/s':>12}" for c in conditions)
          + f" {'x HF':>6} {'tok/CPU-s':>9} {'x HF':>6}" + (f" {'busy/quiet':>10}" if "busy" in conditions else ""))
    for name in decoders:
        for bsz in (1, 8):
            q = table[name, bsz, "quiet"]
            line = f"{name:<14} {bsz:>5} " + " ".join(f"{table[name, bsz, c]:>12.0f}" for c in conditions)
            line += f" {q / table['HF generate', bsz, 'quiet']:>6.2f}"
            line += f" {cpu_table[name, bsz]:>9.0f} {cpu_table[name, bsz] / cpu_table['HF generate', bsz]:>6.2f}"
            if "busy" in conditions:
                line += f" {table[name, bsz, 'busy'] / q:>10.2f}"
            print(line)
    figures: dict = {"model": args.model, "new_tokens": args.new_tokens, "threads": args.threads,
                     "repeats": args.repeats, "tokens_per_second": {
                         name: {f"batch{bsz}_{c}": table[name, bsz, c] for bsz in (1, 8) for c in conditions}
                         for name in decoders},
                     "tokens_per_cpu_second": {name: {f"batch{bsz}": cpu_table[name, bsz] for bsz in (1, 8)}
                                               for name in decoders}}
    for bsz in (1, 8):
        best = max(engines, key=lambda n: table[n, bsz, "quiet"])
        figures[f"x_hf_batch{bsz}"] = table[best, bsz, "quiet"] / table["HF generate", bsz, "quiet"]
        figures[f"fastest_batch{bsz}"] = best
        best_cpu = max(engines, key=lambda n: cpu_table[n, bsz])
        figures[f"x_hf_cpu_batch{bsz}"] = cpu_table[best_cpu, bsz] / cpu_table["HF generate", bsz]

    bw = read_bandwidth(16 if args.smoke else 256)
    print(f"\nmemory-bandwidth limit at batch 1 (single-thread read bandwidth {bw / 1e9:.1f} GB/s, "
          f"sum of {16 if args.smoke else 256} MB):")
    figures["read_bandwidth_bytes_per_s"] = bw
    figures["bandwidth_fraction_batch1"] = {}
    for name, e in engines.items():
        nbytes = e.model.weight_bytes_per_token()
        limit = bw / nbytes
        got, got_cpu = table[name, 1, "quiet"], cpu_table[name, 1]
        figures["bandwidth_fraction_batch1"][name] = got / limit
        figures.setdefault("bandwidth_fraction_cpu_batch1", {})[name] = got_cpu / limit
        print(f"  {name:<12} {nbytes / 1e6:6.1f} MB read per token -> limit {limit:6.0f} tok/s; "
              f"measured {got:.0f} = {got / limit:.2f} of the limit ({got_cpu:.0f} per CPU-second = "
              f"{got_cpu / limit:.2f})")
    parity = greedy_parity(model, engines, batch8, args.new_tokens)
    figures["greedy_parity_with_hf"] = parity
    print(f"\ngreedy decoding vs HF generate, 8 prompts x {args.new_tokens} new tokens, constrained: "
          + "; ".join(f"{name} {same}/{total} tokens equal (up to the first difference)"
                      for name, (same, total) in parity.items()))
    agreement = int8_agreement(model, batch8, args.new_tokens)
    figures["int8_agreement"] = agreement
    print(f"\nint8 vs fp32 greedy, teacher-forced per-token agreement over 8 x {args.new_tokens} tokens: "
          f"{agreement:.3f}")
    if "speech" in model.tokenizers:
        print()
        for q, steps in ((None, (8, 1)), ("int8", (8, 1)), (None, None)):
            code_to_audio, call_to_audio, whole = first_audio(model, q, first_steps=steps)
            what = f"engine{' int8' if q else ''}, first chunk {'SoundStorm steps ' + str(steps) if steps else 'the tokenizer steps'}"
            print(f"speech reply ({what}): first audio {code_to_audio:.3f} s after the first speech code "
                  f"({call_to_audio:.3f} s after the call; whole {150}-token reply {whole:.2f} s)")
    else:
        print("\nthis model has no speech tokenizer attached: time to first audio not measured")
    if args.compile:
        t = time.perf_counter()
        rows = compile_probe(model, batch8, settings, args.repeats)
        print(f"\nengine fp32, decode step eager vs torch.compile (dynamic shapes; {time.perf_counter() - t:.0f} s "
              "including compiling):")
        for bsz, eager, compiled in rows:
            print(f"  batch {bsz}: eager {eager:.0f} tok/s, compiled {compiled:.0f} tok/s")
    if args.sweep:
        sweep(args)
    load_after = os.getloadavg()
    figures["load_average"] = {"before": load_before[0], "after": load_after[0], "cores": os.cpu_count()}
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} (on {os.cpu_count()} cores)")
    if args.json:
        write_json(figures, args.json)
        print(f"wrote {args.json}")


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    main()
