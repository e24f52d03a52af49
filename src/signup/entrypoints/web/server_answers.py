"""The server's own answers (malformed, too large, too slow, too busy): problem+json with
the app's security headers, each counted and, at most once in a while, logged."""

from __future__ import annotations

import time
import uuid
from http import HTTPStatus

import orjson
import structlog
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from signup.entrypoints.web.guards import API_CSP
from signup.entrypoints.web.problems import PROBLEM_JSON, TITLES, problem_type

log = structlog.get_logger(__name__)

# A refusal is counted every time but logged at most once a reason in this many seconds:
# a flood must not become a flood of log lines.
LOG_EVERY_SECONDS = 10.0

REFUSALS = Counter(
    "signup_server_refusals_total",
    "Connections and requests the server refused or closed by its own limits",
    ["reason"],
)

SECURITY_HEADERS = (
    b"x-content-type-options: nosniff\r\n"
    b"x-frame-options: DENY\r\n"
    b"referrer-policy: no-referrer\r\n"
    b"cross-origin-opener-policy: same-origin\r\n"
    b"permissions-policy: camera=(), microphone=(), geolocation=(), payment=()\r\n"
    b"content-security-policy: " + API_CSP.encode() + b"\r\n"
    b"cache-control: no-store\r\n"
)

_ANSWERS: dict[str, tuple[int, str, str]] = {
    "malformed": (400, "malformed-request", "The request is not valid HTTP/1.1."),
    "header-timeout": (
        408,
        "header-timeout",
        "The request's headers did not arrive in time.",
    ),
    "body-timeout": (
        408,
        "body-timeout",
        "The request's body did not arrive in time.",
    ),
    "header-too-large": (
        431,
        "header-too-large",
        "The request line and headers are too large, or there are too many headers.",
    ),
    "busy": (503, "server-busy", "The server is busy. Please try again in a moment."),
}
_TITLES = {408: "Request timeout", 431: "Request headers too large"}


_last_logged: dict[str, float] = {}
_unlogged: dict[str, int] = {}


# Closing idle connections is ordinary housekeeping; the others are refusals.
_ROUTINE = frozenset({"idle-timeout", "evicted"})


def note(reason: str) -> None:
    REFUSALS.labels(reason).inc()
    now = time.monotonic()
    if now - _last_logged.get(reason, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS:
        _unlogged[reason] = _unlogged.get(reason, 0) + 1
        return
    _last_logged[reason] = now
    count = _unlogged.pop(reason, 0) + 1  # since this reason's last line
    if reason in _ROUTINE:
        log.info("server.closed_idle", reason=reason, count=count)
    else:
        log.warning("server.refused", reason=reason, count=count)


def problem_answer(reason: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole HTTP answer for one of the server's own refusals, then `close`."""
    status, slug, detail = _ANSWERS[reason]
    body = orjson.dumps(
        {
            "type": problem_type(slug),
            "title": _TITLES.get(status) or TITLES.get(status) or HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    )
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [
        SECURITY_HEADERS,
        b"x-request-id: ",
        uuid.uuid4().hex.encode(),
        b"\r\n",
        b"retry-after: 1\r\n" if status == 503 else b"",
        b"content-type: ",
        PROBLEM_JSON.encode(),
        b"\r\ncontent-length: ",
        str(len(body)).encode(),
        b"\r\nconnection: close\r\n\r\n",
        body,
    ]
    return b"".join(head)
