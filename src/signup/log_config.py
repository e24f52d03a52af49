"""Structured logs (structlog): console lines for a person at a terminal, JSON for machines.

Secrets are dropped before either renderer sees the event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog

SECRET_KEYS = frozenset(
    {
        "password",
        "client_secret",
        "secret",
        "authorization",
        "access_token",
        "token",
        "password_hash",
    }
)

# Set-up and connection chatter of the libraries under the service: it tells an operator
# nothing the service's own lines do not (`ready: …`, a broker that cannot be reached), and
# on a terminal it buries them. Their warnings and errors still come through.
QUIET_LIBRARIES = ("alembic", "uvicorn.access", "aio_pika", "aiormq", "asyncio")
# uvicorn's start-up lines, which `ready: <url>` replaces. Its other lines stay: shutting
# down, and with several workers a worker that died.
UVICORN_START_UP = (
    "Started server process",
    "Waiting for application startup",
    "Application startup complete",
    "Uvicorn running on",
    "Started parent process",
)


def drop_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def _json(event: Any, **options: Any) -> str:
    """structlog's JSON renderer through orjson, cheaper a line than the standard
    library's json (docs/decisions/0012)."""
    return orjson.dumps(event, default=options.get("default")).decode()


def resolve_format(log_format: str, stream: TextIO) -> Literal["json", "console"]:
    """`auto`: console lines when the logs go to a terminal, JSON otherwise."""
    if log_format == "console" or (log_format == "auto" and _is_terminal(stream)):
        return "console"
    return "json"


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    stream = sys.stderr
    chosen = resolve_format(log_format, stream)
    renderer: Any
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json)
        timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_is_terminal(stream),
            # Rich's traceback (structlog's default) prints each frame's local variables,
            # a password among them; the plain one prints code lines only.
            exception_formatter=structlog.dev.plain_traceback,
        )
        timestamper = structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        drop_secrets,
        # Tracebacks as text before rendering: the same (local-free) text in both formats.
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # Library loggers (uvicorn, aio-pika, alembic) go through the same renderer.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uvicorn = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietStartUp) for f in uvicorn.filters):
        uvicorn.addFilter(_QuietStartUp())


class _QuietStartUp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not str(record.msg).startswith(UVICORN_START_UP)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
