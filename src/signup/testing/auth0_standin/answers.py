"""How the stand-in answers: JSON bodies, and errors in the Management API's shape.

The error body (`statusCode`, `error`, `message`, `errorCode`) is the one docs/auth0.md
documents; the service's Auth0 client reads `errorCode` and `message` to map errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


class ApiError(Exception):
    """A Management API error: raised anywhere in a call, answered by the route."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "statusCode": self.status,
            "error": REASONS.get(self.status, "Error"),
            "message": self.message,
        }
        if self.error_code:
            data["errorCode"] = self.error_code
        return data
