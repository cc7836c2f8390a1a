"""Every script in benchmarks/ runs in its smoke mode (tiny sizes, a random tiny model or
made-up data, no corpus) and prints its table: an API change that breaks a benchmark fails
here, not months later when someone wants its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# script -> runs: (arguments, text its output must hold: the table's header)
SMOKE = {
    "ability_curves.py": [],  # its smoke runs are asserted in detail by tests/benchmarks/test_ability_curves.py
    "bench_cold_start.py": [(["--smoke"], "stages of a chat reply")],
    "bench_constrained_generation.py": [(["--smoke"], "tokens/s")],
    "bench_generation.py": [(["--smoke"], "x HF")],
    "bench_isolation.py": [(["--smoke"], "p95")],
    "bench_image_tokenizer.py": [(["--smoke"], "| threads | precision | encode img/s: mean / fastest batch")],
    "bench_music_codec.py": [(["--smoke"], "| codec | sample rate |")],
    "bench_step_profile.py": [(["--smoke"], "| C++ forward ms |")],
    "bench_serve.py": [(["--smoke"], "TTFT p50"), (["--smoke", "--mix", "--schedulers", "continuous,serial"], "x 1-client p95")],
    "bench_train_lm.py": [(["--smoke"], "tiny:bf16")],
    # the music mode is left out: its first librosa call costs ~25 s of JIT compiling
    "calibrate_scorers.py": [(["scenes", "--smoke"], "Scene checker vs ground truth"),
                             (["speech", "--smoke"], "WER per voice")],
    "code_predictability.py": [(["--smoke"], "| probe per code (held-out)"),
                               (["--smoke", "--skip", "image", "--skip", "music", "--units", "4",
                                 "--units-voices-per-sentence", "2"], "runs collapsed"),
                               (["--smoke", "--skip", "image", "--skip", "music", "--units", "4", "--units-objective",
                                 "phones", "--units-voices-per-sentence", "2"], "phone units 55")],
    "compare_bases.py": [(["--smoke"], "random0 code")],
    "instruction_routes.py": [(["--smoke"], "| ability | guidance | route |")],
    "eval_image_tokenizer.py": [(["--smoke"], "## Linear probes from codes")],
    "eval_music_codec.py": [(["--smoke"], "| system | note F1")],
    "eval_speech_tokenizer.py": [(["--smoke"], "| WER resynthesis, all layers |")],
    "report_sequences.py": [(["--smoke"], "### Tokenise once")],
}


def run(script: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ANYGPT_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)


def test_every_benchmark_has_a_smoke_run():
    assert sorted(p.name for p in BENCHMARKS.glob("*.py")) == sorted(SMOKE)


@pytest.mark.parametrize("script,args,table", [(s, a, t) for s, runs in SMOKE.items() for a, t in runs],
                         ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else None)
def test_smoke_mode_runs_and_prints_its_table(script, args, table, tmp_path):
    if script == "bench_generation.py":
        args = [*args, "--json", str(tmp_path / "figures.json")]
    done = run(script, args, tmp_path)
    assert done.returncode == 0, f"{script} {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert table in done.stdout, done.stdout[-3000:]
    if script == "bench_generation.py":
        figures = json.loads((tmp_path / "figures.json").read_text())
        for key in ("x_hf_batch1", "x_hf_batch8"):
            assert figures[key] > 0
        assert figures["fastest_batch1"] in figures["tokens_per_second"]
        assert figures["tokens_per_second"]["HF generate"]["batch1_quiet"] > 0
        # greedy engines in fp32 write HF generate's tokens
        for name in ("engine", "onnx"):
            same, total = figures["greedy_parity_with_hf"][name]
            assert same == total > 0, name
