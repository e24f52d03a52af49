"""RFC 9457 problem details: every error answer of the API has this shape."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad request",
    403: "Cross-site request refused",
    404: "Not found",
    405: "Method not allowed",
    409: "E-mail already registered",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Internal error",
    503: "Service temporarily unavailable",
}


# A body of a thousand unknown keys earned a thousand field errors (79 KB): the answer is
# bounded, whatever the input; the first few say what to fix.
MAX_ERRORS = 20


def problem_type(slug: str) -> str:
    return f"urn:signup:problem:{slug}"


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        if len(errors) > MAX_ERRORS:
            omitted = len(errors) - MAX_ERRORS
            body["detail"] = f"{detail} ({omitted} more not listed.)"
            errors = errors[:MAX_ERRORS]
        body["errors"] = errors
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=all_headers
    )
