"""Errors a client sees: an HTTP status and OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """status: HTTP status; message names the field (param) and the problem."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


_TYPES = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error", 503: "server_busy",
          504: "timeout"}


def bad_request(param: str, problem: str, code: str = "invalid_value") -> APIError:
    """400 naming the field: 'messages[0].content[1].image_url.url: not a data: URL'."""
    return APIError(400, f"{param}: {problem}", param=param, code=code)


def too_large(param: str, problem: str) -> APIError:
    return APIError(413, f"{param}: {problem}", param=param, code="too_large")
