"""Where a batched decode step's time goes as the KV cache grows: the native int8 engine runs
--rows long music replies and one text reply together, and every --every steps this prints the
step's time, the part spent in the C++ forward (embedding to logits, attention over every row's
cached keys and values included) and the rest (sampling, the segment constraint, streaming,
bookkeeping in Python and torch), against the number of cache columns the rows read.

    python benchmarks/bench_step_profile.py --model anygpt-tiny      # 8 music rows + 1 text row
    python benchmarks/bench_step_profile.py --smoke                  # a random micro model, seconds

How much a step's time grows per column says what an int8 KV cache (half the bytes read per
column) could save; the time at few columns is the weights' and the Python side's. Run it on a
quiet machine: it prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="anygpt-tiny", help="anygpt-tiny (default), random-64x2, or a model folder")
    p.add_argument("--rows", type=int, default=8, help="long music replies in the batch, beside one text reply (default: 8)")
    p.add_argument("--steps", type=int, default=600, help="decode steps to run at most (default: 600)")
    p.add_argument("--every", type=int, default=100, help="steps per printed row (default: 100)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1; the C++ forward is single-threaded)")
    p.add_argument("--smoke", action="store_true", help="random-64x2, 2 music rows, 40 steps")
    a = p.parse_args(argv)
    if a.smoke:
        a.model, a.rows, a.steps, a.every = "random-64x2", 2, 40, 10

    import torch

    from anygpt.lm.generation import get_preset
    from anygpt.loaders import load_model
    from anygpt.parts import TextPart
    from anygpt.templates import Turn

    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    engine = model.engine(quantize="int8", max_batch=a.rows + 1, backend="native")
    forward_s = 0.0
    native = engine.decode_step

    def timed_forward(*args, **kwargs):
        nonlocal forward_s
        t0 = time.perf_counter()
        out = native(*args, **kwargs)
        forward_s += time.perf_counter() - t0
        return out

    engine.decode_step = timed_forward

    def request(text: str, modality: str | None):
        settings = get_preset(modality or "text").with_(max_new_tokens=a.steps + 1)
        req, _ = model.decoder_request(model.template.prompt([Turn("user", [TextPart(text)])]), settings,
                                       force_modality=modality, seed=0)
        return req

    decoder = engine.decoder()
    decoder.prefill_many([request("Play a long piece.", "music") for _ in range(a.rows)] + [request("Say hello.", None)])
    print(f"model {a.model}, native int8, {a.rows} music rows + 1 text row, {a.threads} thread(s), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before")
    print(f"| steps | rows | cache columns (longest row) | step ms | C++ forward ms | rest ms |\n|---|---|---|---|---|---|")
    done = 0
    while done < a.steps and decoder.running:
        forward_s, rows, t0 = 0.0, decoder.running, time.perf_counter()
        n = 0
        while n < a.every and decoder.running:
            decoder.step()
            n += 1
        wall = (time.perf_counter() - t0) / n * 1e3
        done += n
        columns = max((r.length for r in decoder.rows), default=0)
        print(f"| {done} | {rows} | {columns} | {wall:.2f} | {forward_s / n * 1e3:.2f} | {wall - forward_s / n * 1e3:.2f} |",
              flush=True)
    decoder.close()
    print(f"load average {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
