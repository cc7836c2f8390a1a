"""Cold start: wall and CPU time of `anygpt --help`, `anygpt chat --message Hello` and the
README's first command (a chat turn that asks for an image), each a fresh process, and where
a chat reply's time goes (imports, loading, generating), stage by stage in one fresh process.

    python benchmarks/bench_cold_start.py                 # the shipped anygpt-tiny, 3 runs each
    python benchmarks/bench_cold_start.py --smoke         # random-64x2, 1 run (the test suite runs it)

CPU time (user + system of the child) is printed beside wall time: on a shared machine it is
the steadier figure. The imports themselves: `python -X importtime -m anygpt chat --message Hello`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

STAGES = """
import resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
marks = [("start", time.perf_counter(), cpu())]
def mark(name):
    marks.append((name, time.perf_counter(), cpu()))
import torch
mark("import torch")
import anygpt.chat_cli
from anygpt.conversation import Conversation
from anygpt.loaders import load_model
mark("import anygpt's chat path")
model = load_model({model!r})
mark("load the model")
from anygpt.lm.generation import get_preset
conv = Conversation()
conv.add_user("Hello")
model.generate(conv, settings=get_preset("text").with_(max_new_tokens=64), seed=0)
mark("generate a reply (engine built on first use)")
for (_, w0, c0), (name, w1, c1) in zip(marks, marks[1:]):
    print(f"{{name}}\\t{{w1 - w0}}\\t{{c1 - c0}}")
print(f"total\\t{{marks[-1][1] - marks[0][1]}}\\t{{marks[-1][2] - marks[0][2]}}")
print("modules\\t" + " ".join(m for m in ("transformers", "sklearn", "diffusers", "gradio", "fastapi", "onnxruntime", "anygpt.serve",
                                          "anygpt.train", "anygpt.data") if m in sys.modules))
print("de-tokenizers loaded\\t" + " ".join(model.tokenizers.loaded()))
"""


README_MESSAGE = "Draw a big red circle in the middle on a white background."  # README.md's main job


def timed(cmd: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """Run cmd to the end -> (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="anygpt-tiny", help="model name or folder for chat (default anygpt-tiny)")
    p.add_argument("--runs", type=int, default=3, help="fresh processes per command (default 3)")
    p.add_argument("--smoke", action="store_true", help="random-64x2, 1 run: checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.runs = "random-64x2", 1
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        commands = {
            "anygpt --help": [sys.executable, "-m", "anygpt", "--help"],
            "anygpt chat --message Hello": [sys.executable, "-m", "anygpt", "chat", "--model", args.model,
                                            "--message", "Hello", "--out", os.path.join(tmp, "out")],
            "README's first command (image)": [sys.executable, "-m", "anygpt", "chat", "--model", args.model,
                                               "--message", README_MESSAGE, "--out", os.path.join(tmp, "out")],
        }
        load = os.getloadavg()[0]
        print(f"model {args.model}; {args.runs} fresh process(es) each; load average {load:.2f} "
              f"on {os.cpu_count()} cores")
        print(f"{'command':<32} {'wall min':>9} {'wall max':>9} {'CPU min':>8} {'CPU max':>8}")
        for name, cmd in commands.items():
            runs = [timed(cmd, env, tmp) for _ in range(args.runs)]
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            print(f"{name:<32} {min(walls):>8.2f}s {max(walls):>8.2f}s {min(cpus):>7.2f}s {max(cpus):>7.2f}s")
        out = subprocess.run([sys.executable, "-c", STAGES.format(model=args.model)], env=env, cwd=tmp, check=True,
                             capture_output=True, text=True).stdout
    print(f"\nstages of a chat reply in one fresh process ({args.model}, 64 new tokens at most)")
    print(f"{'stage':<46} {'wall':>7} {'CPU':>7}")
    for line in out.strip().splitlines():
        name, *cells = line.split("\t")
        if name in ("modules", "de-tokenizers loaded"):
            print(f"{name}: {(cells[0] if cells else '') or 'none'}")
        else:
            print(f"{name:<46} {float(cells[0]):>6.2f}s {float(cells[1]):>6.2f}s")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
