"""ASGI middlewares that answer before the app reads a request: the API key (every route but
/health) and the body size (413 before more than the limit is read)."""

from __future__ import annotations

import asyncio
import hmac
import json

from anygpt.serve.errors import APIError

OPEN_PATHS = ("/health",)


async def _send_error(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyGate:
    """`Authorization: Bearer KEY` on every HTTP route except OPEN_PATHS (compared in constant time)."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _send_error(send, APIError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                                 code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}))
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads the body up to max_bytes (413 beyond, by Content-Length or by count), checks that it
    is UTF-8 (JSON exchanged between systems must be, RFC 8259; Python's json would also take
    UTF-16 and UTF-32), then hands it to the app; later receive() calls go to the client (so a
    disconnect is still seen).

    Bodies larger than SMALL_BODY share a budget of `budget_bytes` (default max_bytes) while
    they are read and handled: a large body waits up to `wait_s` for room, then gets 503, so
    that many huge bodies at once cannot multiply the server's memory. Small bodies (every
    ordinary chat request) never wait."""

    SMALL_BODY = 256 << 10

    def __init__(self, app, max_bytes: int, budget_bytes: int | None = None, wait_s: float = 30.0):
        self.app = app
        self.max_bytes = max_bytes
        self.budget = max(budget_bytes or max_bytes, max_bytes)
        self.wait_s = wait_s
        self.in_flight = 0
        self._room: asyncio.Condition | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = APIError(413, f"body: request body is larger than the limit of {self.max_bytes} bytes",
                           param="body", code="too_large")
        length = dict(scope["headers"]).get(b"content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        if declared is not None and declared > self.max_bytes:
            await _send_error(send, too_big)
            return
        need = self.max_bytes if declared is None else declared
        need = 0 if need <= self.SMALL_BODY else need
        if need and not await self._reserve(need):
            await _send_error(send, APIError(503, "the server is busy reading other large requests; retry in 1 s",
                                             code="server_busy", headers={"Retry-After": "1"}))
            return
        try:
            await self._handle(scope, receive, send, too_big)
        finally:
            if need:
                await self._release(need)

    async def _handle(self, scope, receive, send, too_big: APIError) -> None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        del chunks
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            await _send_error(send, APIError(400, f"body: not UTF-8 text (byte {e.start}); send JSON in UTF-8",
                                             param="body", code="invalid_encoding"))
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reserve(self, need: int) -> bool:
        if self._room is None:
            self._room = asyncio.Condition()
        async with self._room:
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: self.in_flight + need <= self.budget),
                                       timeout=self.wait_s)
            except asyncio.TimeoutError:
                return False
            self.in_flight += need
            return True

    async def _release(self, need: int) -> None:
        async with self._room:
            self.in_flight -= need
            self._room.notify_all()
