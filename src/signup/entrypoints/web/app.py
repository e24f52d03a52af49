"""The FastAPI application: the page, the sign-up API, health (operations: ops.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from coredis.exceptions import RedisError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from signup.addresses import normalise_origin
from signup.bootstrap import Container, bootstrap, form_definition
from signup.entrypoints.web import challenge
from signup.entrypoints.web.client_ip import ClientAddresses
from signup.entrypoints.web.form_model import FormRules
from signup.entrypoints.web.guards import GuardMiddleware
from signup.entrypoints.web.hand_over import HandOver
from signup.entrypoints.web.hooks import hooks_router
from signup.entrypoints.web.localisation import Localisation
from signup.entrypoints.web.ops import ops_router, ops_serving
from signup.entrypoints.web.page import mount_static, page_router
from signup.entrypoints.web.problems import problem
from signup.entrypoints.web.routes import document_signup, router
from signup.entrypoints.web.schemas import CODE_SUFFIXES
from signup.entrypoints.web.verify import verify_router
from signup.service_layer.consent_texts import check_consent_texts
from signup.settings import Settings


def create_app(
    settings: Settings,
    *,
    container: Container | None = None,
    run_relay: bool = True,
    ops_server: bool = False,
) -> FastAPI:
    """Build the app; the container (adapters) is built in the lifespan unless given.

    `ops_server`: also serve the operations app on SIGNUP_OPS_PORT while this app runs
    (`signup serve` asks; apps built in a test process do not).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = container or bootstrap(settings)
        app.state.container = own
        try:
            # `signup serve` said so already, cleanly; an app built otherwise checks too.
            await check_consent_texts(own.uow, form, datetime.now(UTC))
            async with ops_serving(app, own, settings, enabled=ops_server):
                if run_relay:
                    # Several workers: the lease holder is woken by the others' commits too.
                    own.start_relay(follow_commits=settings.web_concurrency > 1)
                # What start-up made (modules, routes, schemas, the adapters) lives as long
                # as the process: out of the collector's sight, a full collection no longer
                # walks it and stops everything in flight (docs/decisions/0009).
                gc.freeze()
                try:
                    yield
                finally:
                    gc.unfreeze()  # an app served in a test process leaves nothing frozen
        finally:
            await own.aclose()

    app = FastAPI(
        title=f"{settings.site_name} sign-up",
        version="1",
        description="Create an account; one `user.new` event follows each created account.",
        lifespan=lifespan,
        # Not public by default (ops.py): the operations app serves the schema and docs.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # A redirect re-sends a POST (307) to a URL built from the client's Host header.
        redirect_slashes=False,
    )
    app.state.client_addresses = ClientAddresses.configure(
        settings.trust_forwarded_for, settings.trusted_proxies, settings.rate_limit_ipv6_prefix
    )
    app.state.hand_over = HandOver.from_settings(settings)
    app.include_router(router)
    if settings.challenge != "off":
        app.include_router(challenge.router)
    # The site's form: validated, documented and served from one definition.
    form = form_definition(settings)
    app.state.form_rules = FormRules(form)
    # The languages: the catalogues' (the package's, the brand folder's) and the form's.
    localisation = Localisation.from_settings(settings, form.languages())
    app.state.localisation = localisation
    app.state.languages = localisation.languages
    document_signup(app, app.state.form_rules)
    app.include_router(hooks_router)
    app.include_router(page_router(settings, localisation, app.state.form_rules))
    app.include_router(verify_router(settings, localisation))
    mount_static(app, settings)
    if settings.ops_on_public_port:
        app.include_router(ops_router(app.openapi))

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            exc.status_code, "http-error", str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"][1:]) or "body"
            suffix = CODE_SUFFIXES.get(e["type"], "invalid")
            errors.append({"field": field, "message": e["msg"], "code": f"{field}.{suffix}"})
        return problem(422, "invalid-input", "Some fields need attention.", errors=errors)

    @app.exception_handler(RedisError)
    async def shared_store_unavailable(request: Request, exc: RedisError) -> Response:
        # SIGNUP_REDIS_URL's store (the rate limits' counts, the used proof-of-work
        # solutions) away: nothing was done for this request, so it may be sent again.
        structlog.get_logger(__name__).error("storage.unavailable", store="redis", error=str(exc))
        return problem(
            503,
            "storage-unavailable",
            "Sign-up is briefly unavailable. Please try again in a moment.",
            retry_after=5,
        )

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
        # refuses their posts and the middleware would only add `Vary: Origin` (and its
        # cost, docs/decisions/0012) to every response.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(filter(None, map(normalise_origin, settings.allowed_origins))),
            allow_methods=["POST"],
            allow_headers=["Content-Type", "Idempotency-Key"],
            max_age=600,
        )
    app.add_middleware(GuardMiddleware, allowed_origins=settings.origins)
    return app
