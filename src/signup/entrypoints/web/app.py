"""The FastAPI application: the page, the sign-up API, health and metrics."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from signup import metrics
from signup.bootstrap import Container, bootstrap
from signup.entrypoints.web.guards import GuardMiddleware
from signup.entrypoints.web.page import mount_static, page_router
from signup.entrypoints.web.problems import problem
from signup.entrypoints.web.routes import router
from signup.settings import Settings


def create_app(
    settings: Settings, *, container: Container | None = None, run_relay: bool = True
) -> FastAPI:
    """Build the app; the container (adapters) is built in the lifespan unless given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = container or bootstrap(settings)
        app.state.container = own
        if run_relay:
            # Several workers: the lease holder is woken by the others' commits too.
            own.start_relay(follow_commits=settings.web_concurrency > 1)
        # What start-up made (modules, routes, schemas, the adapters) lives as long as
        # the process: out of the collector's sight, a full collection no longer walks
        # it (one was a 35-50 ms stop of everything in flight, every few thousand sign-ups).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # an app served in a test process leaves nothing frozen behind
            await own.aclose()

    app = FastAPI(
        title=f"{settings.site_name} sign-up",
        version="1",
        description="Create an account; one `user.new` event follows each created account.",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(page_router(settings))
    mount_static(app, settings)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        own: Container = request.app.state.container
        try:
            status = await own.uow.read(lambda tx: tx.outbox.status())
            metrics.OUTBOX_PENDING.set(status.pending)
            oldest = status.oldest_pending_at
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            metrics.OUTBOX_OLDEST_AGE.set(age)
        except Exception as exc:  # metrics must answer even when the database does not
            structlog.get_logger(__name__).warning("metrics.outbox_unreadable", error=str(exc))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            exc.status_code, "http-error", str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        return problem(422, "invalid-input", "Some fields need attention.", errors=errors)

    @app.exception_handler(DBAPIError)
    async def storage_unavailable(request: Request, exc: DBAPIError) -> Response:
        # Whatever was committed stays committed; a pending sign-up is settled later.
        structlog.get_logger(__name__).error("storage.unavailable", error=type(exc.orig).__name__)
        return problem(
            503,
            "storage-unavailable",
            "Sign-up is briefly unavailable. Please try again in a moment.",
            retry_after=5,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        structlog.get_logger(__name__).exception("request.failed", path=request.url.path)
        return problem(
            500,
            "internal-error",
            "Something went wrong on our side; nothing was lost. Please try again.",
        )

    if settings.allowed_origins:
        # Only other origins' browsers need CORS answers: with none allowed, the guard
        # refuses their posts and the middleware would only add `Vary: Origin` to every
        # response (22-29 us a request on the sign-up path).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(settings.allowed_origins),
            allow_methods=["POST"],
            allow_headers=["Content-Type", "Idempotency-Key"],
            max_age=600,
        )
    app.add_middleware(GuardMiddleware, allowed_origins=settings.origins)
    return app
