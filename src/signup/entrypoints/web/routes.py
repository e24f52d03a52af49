"""Thin routes: validate, build a command, call the service layer, map the outcome."""

from __future__ import annotations

import gettext
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import orjson
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import text
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from signup import metrics
from signup.bootstrap import Container
from signup.domain.commands import RegisterUser
from signup.domain.errors import ChallengeRefused, EmailAlreadyRegistered, SignUpError
from signup.entrypoints.web.client_ip import ClientAddresses
from signup.entrypoints.web.form_model import FormRules
from signup.entrypoints.web.hand_over import HandOver
from signup.entrypoints.web.localisation import Localisation
from signup.entrypoints.web.problems import problem, refusal_for
from signup.entrypoints.web.schemas import (
    BODY_MALFORMED,
    PasswordPolicy,
    SignUpRequest,
    validate_signup,
)

log = structlog.get_logger(__name__)
router = APIRouter()
# What reading the body raises when the client goes away before sending all of it.
CLIENT_GONE = (
    ClientDisconnect,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


async def get_container(request: Request) -> Container:
    # async: FastAPI runs a plain-def dependency in its thread pool, a hop per request.
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]

IDEMPOTENCY_KEY_MAX = 255
PROBLEM_RESPONSE: dict[str, Any] = {"content": {"application/problem+json": {}}}
SIGNUP_OPENAPI: dict[str, Any] = {
    # The header is read by hand in sign_up (FastAPI's parameter and dependency solving
    # cost more than the rest of the route); documented here as FastAPI would.
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Repeat a request safely: the same key and body give the first answer.",
            "schema": {
                "anyOf": [{"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX}, {"type": "null"}],
                "description": "Repeat a request safely: the same key and body give the first "
                "answer.",
                "title": "Idempotency-Key",
            },
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SignUpRequest.model_json_schema()}},
    },
}


def client_address(request: Request) -> str:
    """The per-address limit's key: canonical, IPv6 by network, proxies seen through."""
    addresses: ClientAddresses = request.app.state.client_addresses
    return addresses.for_scope(request.scope)


def _json_content_type(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


@router.post(
    "/user/signup",
    status_code=201,
    summary="Create an account",
    openapi_extra=SIGNUP_OPENAPI,
    responses={
        201: {"description": "Created; the `user.new` event is durably queued."},
        403: {"description": "Cross-site request refused", **PROBLEM_RESPONSE},
        409: {"description": "The e-mail is already registered", **PROBLEM_RESPONSE},
        413: {"description": "Body too large", **PROBLEM_RESPONSE},
        415: {"description": "Not JSON", **PROBLEM_RESPONSE},
        422: {"description": "Invalid input, with field errors", **PROBLEM_RESPONSE},
        429: {"description": "Too many attempts", **PROBLEM_RESPONSE},
        503: {"description": "Identity provider unavailable", **PROBLEM_RESPONSE},
    },
)
async def sign_up(request: Request) -> Response:
    started = time.perf_counter()
    container: Container = request.app.state.container
    idempotency_key = request.headers.get("idempotency-key")
    localisation: Localisation = request.app.state.localisation
    language = localisation.language_of(request)
    translations = localisation.translations(language)
    if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        return _counted(
            "invalid",
            ["idempotency_key.too_long"],
            problem(
                422,
                "invalid-input",
                "Some fields need attention.",
                errors=[
                    {
                        "field": "Idempotency-Key",
                        "message": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
                        "code": "idempotency_key.too_long",
                    }
                ],
                translations=translations,
            ),
        )
    response = await _sign_up(request, container, idempotency_key, language, translations)
    metrics.SIGNUP_LATENCY.observe(time.perf_counter() - started)
    return response


async def _sign_up(
    request: Request,
    container: Container,
    idempotency_key: str | None,
    language: str,
    translations: gettext.NullTranslations,
) -> Response:
    settings = container.settings
    limited = await _over_limit(
        container,
        "ip",
        client_address(request),
        "Too many sign-up attempts from your network: please wait a moment.",
    )
    if limited is not None:
        return limited
    if not _json_content_type(request):
        return _counted(
            "unsupported_media_type",
            ["unsupported_media_type"],
            problem(415, "unsupported-media-type", "Send the form as application/json."),
        )
    try:
        body = await request.body()
    except CLIENT_GONE:
        # The client hung up mid-upload: nobody is left to answer, nothing went wrong here.
        log.info("request.client_disconnected", path=request.url.path)
        return problem(400, "client-disconnected", "The request body did not arrive in full.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _counted(
            "invalid",
            ["body.malformed"],
            problem(
                422,
                "invalid-input",
                "The body is not valid JSON.",
                errors=[dict(BODY_MALFORMED)],
                translations=translations,
            ),
        )
    rules: FormRules = request.app.state.form_rules
    checked = validate_signup(data, PasswordPolicy(settings.site_name), rules.model)
    if isinstance(checked, list):
        return _counted(
            "invalid",
            [error.get("code", "invalid_input") for error in checked],
            problem(
                422,
                "invalid-input",
                "Some fields need attention.",
                errors=checked,
                translations=translations,
            ),
        )
    if container.challenge is not None:
        # Before the e-mail's limit: requests without a good solution spend none of an
        # address's attempts (a flood cannot lock its owner out).
        try:
            await container.challenge.redeem(checked.challenge, idempotency_key)
        except ChallengeRefused as exc:
            return _refused(request, exc, translations)
    limited = await _over_limit(
        container,
        "email",
        checked.email.casefold(),
        "Too many sign-up attempts for this e-mail address: please wait.",
    )
    if limited is not None:
        return limited
    if checked.website:
        # The honeypot, filled: a bot. It gets a success's answer, and nothing happens.
        _count_refusal("honeypot", ["honeypot"])
        return _created(container.registration.decoy(checked.email, idempotency_key).body())
    applicant = checked.applicant()
    if not rules.form.empty:
        # The language the page was shown in: its consent texts are the ones recorded.
        applicant = rules.applicant(checked, language, datetime.now(UTC))
    applicant = replace(applicant, language=language)
    command = RegisterUser(applicant, checked.password, idempotency_key or None)
    try:
        await container.screening.check(checked.email, checked.password)
        registered = await container.registration.register(command)
    except SignUpError as exc:
        return _refused(request, exc, translations)
    metrics.SIGNUPS.labels("replayed" if registered.replayed else "created").inc()
    log.info("signup.created", user_id=registered.user_id, replayed=registered.replayed)
    return _created(registered.body())


def _created(body: dict[str, Any]) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=201,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _extensions(request: Request, exc: SignUpError) -> dict[str, str] | None:
    """The 409 "already registered" points the page to the site's sign-in."""
    hand_over: HandOver = request.app.state.hand_over
    if isinstance(exc, EmailAlreadyRegistered) and hand_over.sign_in_url:
        return {"sign_in_url": hand_over.sign_in_url}
    return None


def _refused(
    request: Request, exc: SignUpError, translations: gettext.NullTranslations
) -> Response:
    refusal = refusal_for(exc)
    if refusal is None:
        raise exc  # not a refusal the API answers: a bug, the app's 500 problem
    if refusal.warning is not None:
        event, reason = refusal.warning
        log.warning(event, reason=reason(exc))
    answer = refusal.answer(exc, _extensions(request, exc), translations)
    return _counted(refusal.outcome, refusal.reasons_of(exc), answer)


async def _over_limit(container: Container, scope: str, key: str, detail: str) -> Response | None:
    """Count an attempt against the `scope` limit; the 429 answer when it is over."""
    wait = await container.limiter.hit(scope, key)
    if wait is None:
        return None
    metrics.RATE_LIMITED.labels(scope).inc()
    reason = f"too_many_attempts.{scope}"
    return _counted(
        "rate_limited", [reason], problem(429, "too-many-attempts", detail, retry_after=wait)
    )


def _counted(outcome: str, reasons: list[str], response: Response) -> Response:
    _count_refusal(outcome, reasons)
    return response


def _count_refusal(outcome: str, reasons: list[str]) -> None:
    """Count a refusal by outcome and by each reason (stable code), and log it: the
    reasons only, never the address or the password."""
    if outcome != "rate_limited":  # those count on signup_rate_limited_total, as before
        metrics.SIGNUPS.labels(outcome).inc()
    unique = sorted(set(reasons))
    for reason in unique:
        metrics.REFUSALS.labels(reason).inc()
    log.info("signup.refused", reasons=unique)


@router.get(
    "/signup/schema.json",
    summary="The sign-up form as a JSON Schema (for sites that build their own page)",
    response_class=Response,
    responses={200: {"content": {"application/schema+json": {}}}},
)
async def form_schema(request: Request) -> Response:
    rules: FormRules = request.app.state.form_rules
    body = rules.form_schema(request.app.state.container.settings.site_name)
    return Response(
        orjson.dumps(body),
        media_type="application/schema+json",
        headers={"Cache-Control": "public, max-age=300"},
    )


def document_signup(app: FastAPI, rules: FormRules) -> None:
    """Make the app's /openapi.json describe the body its form validates (one definition)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI keeps it in app.openapi_schema
            schema["paths"]["/user/signup"]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": rules.request_schema()}},
            }
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


@router.get("/healthz", summary="Alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: database reachable; broker state reported")
async def readyz(container: ContainerDep) -> Response:
    # Public: the database and the broker's state, nothing that moves with one sign-up
    # (the outbox's count would tell a new address from a registered one while the
    # broker is away) and nothing of the broker's configuration; the operations port's
    # /readyz says more (ops_readyz).
    return await _readiness(container, detailed=False)


async def ops_readyz(container: ContainerDep) -> Response:
    return await _readiness(container, detailed=True)


async def _readiness(container: Container, *, detailed: bool) -> Response:
    report: dict[str, Any] = {
        "database": "ok",
        "broker": "connected" if container.publisher.connected else "disconnected",
    }
    # Why not (wrong credentials, vhost refused, blocked by an alarm, unreachable), when
    # the publisher can say: the outbox holds the events meanwhile, so still 200.
    if detailed and (problem := getattr(container.publisher, "problem", None)):
        report["broker_problem"] = str(problem)
    # Which broker node (`host:port`, never the URL) the relay publishes to.
    if detailed and (node := getattr(container.publisher, "node", None)):
        report["broker_node"] = str(node)
    status = 200
    try:
        async with container.uow.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))
        if detailed:
            outbox = await container.uow.read(lambda tx: tx.outbox.status())
            report["outbox_pending"] = outbox.pending
            metrics.OUTBOX_PENDING.set(outbox.pending)
    except Exception as exc:
        report["database"] = f"unreachable: {type(exc).__name__}" if detailed else "unreachable"
        status = 503
    report["status"] = "ready" if status == 200 else "not ready"
    return Response(orjson.dumps(report), status_code=status, media_type="application/json")
