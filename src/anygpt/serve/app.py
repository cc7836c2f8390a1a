"""The FastAPI app: POST /v1/chat/completions (JSON or server-sent events), GET /v1/models,
GET /health; and `running_server`, uvicorn in a thread on a socket bound where it is told
(tests and benchmarks use 127.0.0.1 and a free port)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from anygpt.lm.streaming import TextDelta
from anygpt.serve import replies
from anygpt.serve.errors import APIError
from anygpt.serve.gates import ApiKeyGate, BodyLimit
from anygpt.serve.media import audio_bytes, b64
from anygpt.serve.scheduler import Failed, Finished, MediaDone, SpeechAudio, SpeechDone
from anygpt.serve.schemas import ChatRequest, param_of
from anygpt.serve.service import ChatService

log = logging.getLogger("anygpt.serve")
POLL_S = 0.1  # how often a waiting request checks for its client's disconnect


def create_app(service: ChatService) -> FastAPI:
    """The HTTP front end of `service`; the service's scheduler runs while the app does."""

    @asynccontextmanager
    async def lifespan(_app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="anygpt", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    cfg = service.config
    app.state.service = service

    @app.exception_handler(APIError)
    async def _api_error(_req, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {"loc": ("body",), "msg": "invalid request"}
        param = param_of(tuple(first.get("loc", ("body",))))
        msg = "invalid JSON" if first.get("type") == "json_invalid" else first.get("msg", "invalid value")
        if first.get("type") == "value_error":  # our own validators name the field themselves
            msg = msg.removeprefix("Value error, ")
            param = msg.split(":", 1)[0] if ":" in msg else param
            return JSONResponse(APIError(400, msg, param=param, code="invalid_value").body(), 400)
        return JSONResponse(APIError(400, f"{param}: {msg}", param=param, code="invalid_value").body(), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, e: StarletteHTTPException):
        if e.status_code == 400:  # FastAPI could not parse the body (malformed, or nested past the parser's depth)
            return JSONResponse(APIError(400, f"body: {e.detail}", param="body", code="invalid_json").body(), 400)
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(_req, e: Exception):
        log.exception("unexpected error")
        return JSONResponse(APIError(500, "internal server error", code="internal_error").body(), 500)

    @app.get("/health")
    async def health() -> dict:
        return service.health()

    def model_card() -> dict:
        return {"id": cfg.model_name, "object": "model", "created": 0, "owned_by": "anygpt"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str) -> dict:
        if model_id != cfg.model_name:
            raise APIError(404, f"model: {model_id!r} is not served here", param="model", code="model_not_found")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        job = await run_in_threadpool(service.job, body)  # decoding media is CPU work
        if body.stream:
            return _stream(service, job, request)
        service.scheduler.submit(job)
        result = await _wait(job, request)
        return replies.completion(job, result, cfg.model_name)

    if cfg.api_key:
        app.add_middleware(ApiKeyGate, api_key=cfg.api_key)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    return app


async def _wait(job, request: Request):
    """The job's result; cancels it when the client disconnects or the timeout passes."""
    fut = asyncio.wrap_future(job.future)
    try:
        while True:
            done, _ = await asyncio.wait({fut}, timeout=POLL_S)
            if done:
                return fut.result()
            if time.monotonic() > job.deadline:
                raise APIError(504, f"timed out after {job.timeout:g} s", code="timeout")
            if await request.is_disconnected():
                raise APIError(499, "client disconnected", code="cancelled")
    finally:
        if not job.future.done():
            job.cancel.set()


def _stream(service: ChatService, job, request: Request) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def emit(ev) -> None:  # called from the scheduler's threads (decode, intake, render)
        try:
            loop.call_soon_threadsafe(events.put_nowait, ev)
        except RuntimeError:  # the event loop is closed: nobody listens any more
            job.cancel.set()

    job.emit = emit
    service.scheduler.submit(job)  # a full queue answers 503 before the stream starts
    name = service.config.model_name

    def sse(obj: Any) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    def event_sse(ev) -> tuple[str, bool]:
        """One scheduler event -> (its SSE text, whether the stream ends with it)."""
        if isinstance(ev, TextDelta):
            return sse(replies.chunk(job, name, {"content": ev.text})), False
        if isinstance(ev, SpeechAudio):
            data = audio_bytes(ev.samples, ev.sample_rate, job.audio_format)
            return sse(replies.chunk(job, name, {"audio": {"id": ev.audio_id, "data": b64(data),
                                                           "format": job.audio_format,
                                                           "sample_rate": ev.sample_rate}})), False
        if isinstance(ev, SpeechDone):
            return sse(replies.chunk(job, name, {"audio": {
                "id": ev.audio_id, "transcript": ev.transcript,
                "expires_at": int(time.time()) + replies.AUDIO_TTL_S}})), False
        if isinstance(ev, MediaDone):
            return sse(replies.chunk(job, name, {"content": [replies.media_part(ev.media)]})), False
        if isinstance(ev, Finished):
            text = sse(replies.chunk(job, name, {}, ev.result.finish_reason))
            if job.include_usage:
                text += sse(replies.usage_chunk(job, name, ev.result))
            return text + "data: [DONE]\n\n", True
        if isinstance(ev, Failed):
            return sse(ev.error.body()), True
        return "", False

    async def body() -> AsyncIterator[str]:
        try:
            yield sse(replies.chunk(job, name, {"role": "assistant", "content": ""}))
            ended = False
            while not ended:
                left = job.deadline - time.monotonic()
                if left <= 0:
                    job.cancel.set()
                    yield sse(APIError(504, f"timed out after {job.timeout:g} s", code="timeout").body())
                    break
                ready = []
                if events.empty():
                    try:
                        ready.append(await asyncio.wait_for(events.get(), timeout=min(left, POLL_S)))
                    except asyncio.TimeoutError:
                        # uvicorn (ASGI 2.4) reports a gone client only when a write fails; while no
                        # event comes, ask for it
                        if await request.is_disconnected():
                            break
                        continue
                # every event already queued goes out in one write: under load the event loop
                # wakes less often than tokens come, and each wait and write costs it CPU that
                # the scheduler thread then waits for (the GIL)
                while not events.empty():
                    ready.append(events.get_nowait())
                chunks = []
                for ev in ready:
                    text, ended = event_sse(ev)
                    chunks.append(text)
                    if ended:
                        break
                yield "".join(chunks)
        finally:
            job.cancel.set()  # the client went away (or the stream ended): stop any work left

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                   log_level: str = "warning") -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on (host, port) (port 0: a free one) -> base URL;
    the server is stopped, and its thread joined, when the block exits."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {host}:{sock.getsockname()[1]} did not start")
            time.sleep(0.02)
        bound = sock.getsockname()[1]
        yield f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
