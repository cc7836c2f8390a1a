"""ASGI middlewares that answer before the app reads a request: the API key (every route but
/health) and the body size (413 before more than the limit is read)."""

from __future__ import annotations

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
    """Reads the body up to max_bytes (413 beyond, by Content-Length or by count), then hands it
    to the app; later receive() calls go to the client (so a disconnect is still seen)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = APIError(413, f"body: request body is larger than the limit of {self.max_bytes} bytes",
                           param="body", code="too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_error(send, too_big)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_error(send, too_big)
                return
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
