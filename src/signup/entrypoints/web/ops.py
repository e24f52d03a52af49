"""Operations endpoints: `/metrics`, `/openapi.json`, `/docs`, with `/healthz` and `/readyz`.

Not public: the sign-up and provider counters move with the outcome of each request, so
one probe and one scrape tell whether an address has an account. `signup serve` serves
them on SIGNUP_OPS_HOST:SIGNUP_OPS_PORT (loopback by default), from a second uvicorn
server that each web worker runs beside the public one; SIGNUP_OPS_ON_PUBLIC_PORT=true
also puts them on the public app (development).

`/docs` is a page rendered here from the public app's OpenAPI document, without script,
style or anything fetched (guards.DOCS_CSP): Swagger UI came from a CDN without
integrity, and the one PyPI bundle of it (swagger-ui-bundle 1.1.0, Swagger UI 4.15.5)
cannot show OpenAPI 3.1, which FastAPI writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from signup import metrics
from signup.bootstrap import Container
from signup.entrypoints.web.guards import GuardMiddleware
from signup.entrypoints.web.ops_socket import bind_ops_socket
from signup.entrypoints.web.problems import problem
from signup.entrypoints.web.routes import healthz, ops_readyz
from signup.settings import Settings

OPS_PATHS = ("/metrics", "/openapi.json", "/docs")
log = structlog.get_logger(__name__)


def ops_router(schema: Callable[[], dict[str, Any]]) -> APIRouter:
    """The operations routes; `schema` gives the public app's OpenAPI document."""
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        own: Container = request.app.state.container
        try:
            status = await own.uow.read(lambda tx: tx.outbox.status())
            metrics.OUTBOX_PENDING.set(status.pending)
            oldest = status.oldest_pending_at
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            metrics.OUTBOX_OLDEST_AGE.set(age)
        except Exception as exc:  # metrics must answer even when the database does not
            log.warning("metrics.outbox_unreadable", error=str(exc))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/openapi.json")
    async def openapi_document() -> Response:
        return Response(orjson.dumps(schema()), media_type="application/json")

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(schema()))

    return router


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def render_docs(schema: dict[str, Any]) -> str:
    """The OpenAPI document as plain HTML: every operation, its parameters, body, answers."""
    e = html.escape
    info = schema.get("info", {})
    title = e(str(info.get("title", "API")))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title></head><body>",
        f"<h1>{title} <small>(version {e(str(info.get('version', '')))})</small></h1>",
        f"<p>{e(str(info.get('description', '')))}</p>",
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f"{e(str(schema.get('openapi', '')))}).</p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2>")
            parts.append(f"<p>{e(str(op.get('summary', '')))}</p>")
            if op.get("description"):
                parts.append(f"<p>{e(str(op['description']))}</p>")
            for param in op.get("parameters", []):
                need = "required" if param.get("required") else "optional"
                parts.append(
                    f"<p>{e(str(param.get('in')))} <code>{e(str(param.get('name')))}</code> "
                    f"({need}): {e(str(param.get('description', '')))}</p>"
                )
            for kind, body in op.get("requestBody", {}).get("content", {}).items():
                parts.append(f"<h3>Request body, <code>{e(kind)}</code></h3>")
                parts.append(f"<pre>{e(_json(body.get('schema', {})))}</pre>")
            parts.append("<h3>Answers</h3><ul>")
            for code, answer in op.get("responses", {}).items():
                kinds = ", ".join(answer.get("content", {}))
                parts.append(
                    f"<li><code>{e(str(code))}</code> {e(str(answer.get('description', '')))}"
                    f"{f' (<code>{e(kinds)}</code>)' if kinds else ''}</li>"
                )
            parts.append("</ul>")
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        parts.append(f'<h2 id="{e(name)}">{e(name)}</h2><pre>{e(_json(component))}</pre>')
    parts.append("</body></html>")
    return "\n".join(parts)


def create_ops_app(public: FastAPI, container: Container) -> GuardMiddleware:
    """The operations app: the public app's schema, the process's metrics, its health."""
    ops = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ops.state.container = container
    ops.include_router(ops_router(public.openapi))
    ops.add_api_route("/healthz", healthz, include_in_schema=False)
    ops.add_api_route("/readyz", ops_readyz, include_in_schema=False)

    @ops.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            exc.status_code, "http-error", str(exc.detail), headers=dict(exc.headers or {})
        )

    # The same request ids and security headers (and the docs page's policy) as in public.
    return GuardMiddleware(
        KnownHostsOnly(ops, container.settings.ops_host, container.settings.ops_allowed_hosts),
        allowed_origins=(),
    )


class KnownHostsOnly:
    """Answers only requests whose `Host` is an IP literal, `localhost`, the ops host or
    one of SIGNUP_OPS_ALLOWED_HOSTS: a browser page that rebinds its own name to the
    operations address (DNS rebinding) sends its own name and is refused."""

    def __init__(self, app: ASGIApp, ops_host: str, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset({"localhost", ops_host.lower(), *(h.lower() for h in allowed)})

    def known(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        name = name.strip("[]").lower()
        if name in self.allowed:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not self.known(host):
                response = problem(421, "unknown-host", "This address does not serve that host.")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _OpsServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The public server handles SIGTERM and SIGINT; its shutdown stops this one.
        yield


def _report_stop(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("ops.stopped", error=repr(task.exception()))


@contextlib.asynccontextmanager
async def ops_serving(
    public: FastAPI, container: Container, settings: Settings, *, enabled: bool = True
) -> AsyncIterator[None]:
    """Serve the operations app on SIGNUP_OPS_PORT while the block runs (none if empty)."""
    if not enabled or settings.ops_port is None:
        yield
        return
    # Several web workers each serve their own registry there; the kernel spreads the
    # scrapes over them, so one scrape sees one worker's figures.
    sock = bind_ops_socket(
        settings.ops_host, settings.ops_port, shared=settings.web_concurrency > 1
    )
    # Listening from here on: a connection that comes before the server's first accept
    # waits in the backlog rather than being refused.
    sock.listen(128)
    config = uvicorn.Config(
        create_ops_app(public, container),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _OpsServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="ops-server")
    task.add_done_callback(_report_stop)
    log.info("ops.listening", host=settings.ops_host, port=settings.ops_port)
    try:
        yield
    finally:
        server.should_exit = True
        # A failure of the operations server was logged when it happened (_report_stop);
        # it does not fail the public app's shutdown.
        await asyncio.gather(task, return_exceptions=True)
