"""`anygpt serve` and `anygpt demo` as commands: their help, and a real server process bound to
127.0.0.1 and a free port, asked over HTTP, then stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from anygpt import cli
from anygpt.cli import COMMANDS
from anygpt.serve import cli as serve_cli
from anygpt.serve import demo as demo_cli

MAINS = {"serve": serve_cli.main, "demo": demo_cli.main}


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_registered_and_help_gives_examples(command, capsys):
    assert COMMANDS[command][0] == MAINS[command].__module__
    with pytest.raises(SystemExit) as e:
        MAINS[command](["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"anygpt {command} --model anygpt-tiny" in out and "--host" in out


@pytest.mark.parametrize("flag", ["--max-batch=0", "--max-queue=0", "--timeout=0", "--threads=0"])
def test_bad_flag_values_are_usage_errors(flag, capsys):
    with pytest.raises(SystemExit) as e:
        serve_cli.main(["--model", "random-64x2", flag])
    assert e.value.code == 2 and flag.split("=")[0] in capsys.readouterr().err


def test_a_missing_model_is_one_line_and_exit_1(tmp_path, capsys):
    assert cli.main(["serve", "--model", str(tmp_path / "nowhere")]) == 1  # the dispatcher prints the error
    err = capsys.readouterr().err
    assert err.startswith("anygpt serve: ") and "nowhere" in err and "Traceback" not in err


def test_serve_process_answers_on_the_port_it_was_given(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ANYGPT_API_KEY": "k3y", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "anygpt.cli", "serve", "--model", "random-64x2",
                             "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        assert httpx.get(base + "/v1/models").status_code == 401  # the key from the environment
        r = httpx.post(base + "/v1/chat/completions", headers={"Authorization": "Bearer k3y"}, timeout=60,
                       json={"model": "random-64x2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 5
        # random-64x2 has no image de-tokenizer: asking for images is refused, clearly
        r = httpx.post(base + "/v1/chat/completions", headers={"Authorization": "Bearer k3y"}, timeout=60,
                       json={"messages": [{"role": "user", "content": "Hi"}], "modalities": ["image"]})
        assert r.status_code == 400 and "de-tokenizer" in r.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_engine_flag_picks_the_decoder_backend(tmp_path, monkeypatch, capsys):
    from anygpt.lm.onnx_engine import OnnxEngine

    monkeypatch.setenv("ANYGPT_CACHE", str(tmp_path / "cache"))  # the ONNX export goes here
    args = serve_cli.build_parser().parse_args(["--model", "random-64x2", "--engine", "onnx", "--int8"])
    service = serve_cli.load_service(args)
    assert type(service.scheduler.engine) is OnnxEngine and service.scheduler.engine.quantize == "int8"
    default = serve_cli.load_service(serve_cli.build_parser().parse_args(["--model", "random-64x2"]))
    assert type(default.scheduler.engine).__name__ == "Engine"
    with pytest.raises(SystemExit) as e:
        serve_cli.main(["--model", "random-64x2", "--engine", "hf"])  # no continuous batching there
    assert e.value.code == 2 and "--engine" in capsys.readouterr().err
