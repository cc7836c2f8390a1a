"""Load on a server, for the isolation test and the serving benchmarks: a server in its own
process (so that its memory is its own), well-formed and hostile requests, concurrent clients,
latency percentiles and the server's resident memory.

    with ServerProcess("random-64x2-media") as srv:         # 127.0.0.1, a free port
        idle = srv.rss()
        srv.reset_peak()
        runs = run_clients(srv.url, [well_formed(i) for i in range(8)] + [hostile(0)], per_client=2)
        srv.peak_rss(), percentile([r.latency for r in runs if r.kind == "good"], 0.95)

A client sends its requests one after another; clients run at once on threads. Every request
has a time limit (`timeout`), so a run is bounded in count and time. Hostile requests (bad
numbers, huge bodies, media bombs) are made here, small where a header is all that matters.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

MODEL = "random-64x2-media"


# ----------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`anygpt serve`'s app for `model` (a name loaders.load_model knows, or a folder) in a child
    process on 127.0.0.1 and a free port, with ServeConfig fields from `config`; terminated on
    exit. Its stderr goes to a file, read back when it fails to start."""

    def __init__(self, model: str = MODEL, *, threads: int = 1, start_timeout: float = 300.0, **config):
        self.model, self.threads, self.config, self.start_timeout = model, threads, config, start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServerProcess":
        import tempfile

        self._log = tempfile.TemporaryFile(mode="w+")
        spec = json.dumps({"model": self.model, "port": self.port, "threads": self.threads, "config": self.config})
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        self.proc = subprocess.Popen([sys.executable, "-c", f"from anygpt.serve.loadgen import _serve; _serve({spec!r})"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self._log.read()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the server did not start in {self.start_timeout:g} s")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()

    def _status(self, field_name: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/{self.proc.pid}/status has no {field_name}")

    def rss(self) -> int:
        """Resident memory now, bytes."""
        return self._status("VmRSS")

    def reset_peak(self) -> None:
        """Start counting the peak afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def peak_rss(self) -> int:
        """The most resident memory since start or reset_peak, bytes (the kernel's count: no
        peak between two samples is missed)."""
        return self._status("VmHWM")


def _serve(spec_json: str) -> None:
    """The child process of ServerProcess."""
    import torch
    import uvicorn

    from anygpt.loaders import load_model
    from anygpt.serve.app import create_app
    from anygpt.serve.media import MediaLimits
    from anygpt.serve.service import ChatService, ServeConfig

    spec = json.loads(spec_json)
    torch.set_num_threads(spec["threads"])
    config = dict(spec["config"])
    if "limits" in config:
        config["limits"] = MediaLimits(**config["limits"])
    model = load_model(spec["model"])
    service = ChatService(model, ServeConfig(model_name=os.path.basename(spec["model"].rstrip("/")),
                                             threads=spec["threads"], **config))
    uvicorn.run(create_app(service), host="127.0.0.1", port=spec["port"], log_level="error")


# ----------------------------------------------------------------------------- requests
@dataclass
class Call:
    """A request to send: kind ("good", "hostile", ...), JSON body or raw bytes, and what the
    answer must be (check(response) -> problem or None)."""

    kind: str
    body: Any
    check: Callable[[httpx.Response], str | None] = lambda r: None
    name: str = ""


@dataclass
class Outcome:
    kind: str
    name: str
    status: int | None
    latency: float
    problem: str | None = None
    answer: Any = None


def ask(text: Any, model: str = MODEL, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def well_formed(i: int, *, max_tokens: int = 12, model: str = MODEL) -> Call:
    """A short question with a fixed seed (its answer is the same whatever else runs)."""
    words = "tell me about the weather the sea music pictures a cat a house the city at night".split()
    question = " ".join(words[(i + k) % len(words)] for k in range(4 + i % 9))
    return Call("good", ask(question, model, max_tokens=max_tokens, seed=1000 + i), name=f"good-{i}")


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels and whose data holds almost nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _image(data: bytes, mime: str = "image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def _refused(*statuses: int) -> Callable[[httpx.Response], str | None]:
    return lambda r: None if r.status_code in statuses else f"expected {statuses}, got {r.status_code}: {r.text[:200]}"


def hostile_calls(model: str = MODEL, *, huge_text_mb: float = 30.0) -> list[Call]:
    """One of each hostile kind: bad numbers, huge bodies, media bombs; each must be refused
    (400 or 413; 503 when the large-body budget is busy)."""
    import numpy as np
    import soundfile as sf

    flac = io.BytesIO()
    sf.write(flac, np.zeros((65535, 8), dtype=np.float32), 655350, format="FLAC", subtype="PCM_16")
    inner = png_declaring(12000, 12000)
    ico = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(inner), 22) + inner
    huge = "word " * int(huge_text_mb * 2**20 / 5)
    nan_body = json.dumps(ask("hi", model, max_tokens=4)).replace('"max_tokens": 4', '"temperature": NaN').encode()
    bad = _refused(400, 413, 503)
    return [
        Call("hostile", ask("x", model, seed=2**64), bad, "seed 2^64"),
        Call("hostile", ask("x", model, top_k=2**63, temperature=1.0), bad, "top_k 2^63"),
        Call("hostile", nan_body, bad, "temperature NaN"),
        Call("hostile", json.dumps(ask(huge, model)).encode(), bad, f"{huge_text_mb:g} MB text"),
        Call("hostile", ask([_image(png_declaring(20000, 20000))], model), bad, "20000 px PNG"),
        Call("hostile", ask([_image(ico)], model), bad, "ICO holding a 12000 px PNG"),
        Call("hostile", ask([{"type": "input_audio", "input_audio": {
            "data": base64.b64encode(flac.getvalue()).decode(), "format": "flac"}}], model), bad,
             "8-channel 655 kHz FLAC"),
        Call("hostile", json.dumps(ask("hi", model)).encode("utf-16"), bad, "UTF-16 body"),
        Call("hostile", ask([{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": ["wav"]}}], model),
             bad, "audio.format a list"),
    ]


def send(client: httpx.Client, url: str, call: Call) -> Outcome:
    t0 = time.perf_counter()
    try:
        if isinstance(call.body, bytes):
            r = client.post(url + "/v1/chat/completions", content=call.body,
                            headers={"content-type": "application/json"})
        else:
            r = client.post(url + "/v1/chat/completions", json=call.body)
    except httpx.HTTPError as e:
        return Outcome(call.kind, call.name, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
    latency = time.perf_counter() - t0
    answer = None
    if r.status_code == 200:
        try:
            answer = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError):
            pass
    problem = call.check(r) if call.kind != "good" else (
        None if r.status_code == 200 else f"status {r.status_code}: {r.text[:200]}")
    return Outcome(call.kind, call.name, r.status_code, latency, problem, answer)


def run_clients(url: str, clients: list[list[Call]], *, timeout: float = 300.0) -> list[Outcome]:
    """Each client (a list of calls, sent one after another) on its own thread, all started
    together -> every outcome."""
    out: list[Outcome] = []
    lock = threading.Lock()
    gate = threading.Barrier(len(clients))

    def client_loop(calls: list[Call]) -> None:
        with httpx.Client(timeout=timeout) as client:
            gate.wait(timeout)
            for call in calls:
                o = send(client, url, call)
                with lock:
                    out.append(o)

    threads = [threading.Thread(target=client_loop, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * (1 + max(len(c) for c in clients)))
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


@dataclass
class IsolationRun:
    """The isolation check's figures: answers of the well-formed requests alone and under load."""

    idle_rss: int
    peak_rss: int
    quiet: list[Outcome] = field(default_factory=list)
    loaded: list[Outcome] = field(default_factory=list)

    def good(self, outcomes: list[Outcome]) -> list[Outcome]:
        return [o for o in outcomes if o.kind == "good"]


def isolation_run(srv: ServerProcess, *, clients: int = 32, hostile_share: float = 0.25, per_client: int = 2,
                  max_tokens: int = 12, huge_text_mb: float = 30.0, timeout: float = 300.0) -> IsolationRun:
    """Well-formed clients alone, then the same with a share of them hostile; the server's
    idle and peak RSS around the loaded run."""
    n_hostile = int(round(clients * hostile_share))
    n_good = clients - n_hostile
    good = [[well_formed(c * per_client + i, max_tokens=max_tokens, model=srv.model) for i in range(per_client)]
            for c in range(n_good)]
    hostile = hostile_calls(srv.model, huge_text_mb=huge_text_mb)
    bad = [[hostile[(c * per_client + i) % len(hostile)] for i in range(per_client)] for c in range(n_hostile)]
    run_clients(srv.url, good[:1], timeout=timeout)  # warm-up: first-call costs out of the figures
    quiet = run_clients(srv.url, good, timeout=timeout)
    idle = srv.rss()
    srv.reset_peak()
    loaded = run_clients(srv.url, good + bad, timeout=timeout)
    return IsolationRun(idle, srv.peak_rss(), quiet, loaded)
