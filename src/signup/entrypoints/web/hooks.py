"""`POST /hooks/auth0`: Auth0's events (an Event Stream's webhook, or the Actions in
docs/auth0-events.md), server to server. Thin: authenticate, read, hand to the use case.

A 204 means the account's announcement (or its sighting) is committed: Auth0 then stops
retrying. The answer waits on the database only, never on Auth0 or the broker.

Unlike the form's API this endpoint is not for browsers: it is authenticated by a
credential no browser sends on its own, so the cross-site guard and the per-address
rate limit (both there for the form) do not apply to it (guards.py, `SERVER_TO_SERVER`).
"""

from __future__ import annotations

import base64
import binascii
import hmac

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

from signup import metrics
from signup.adapters.auth0.events import MalformedDelivery, read_delivery
from signup.bootstrap import Container
from signup.domain.events import ORIGIN_AUTH0_EVENT
from signup.entrypoints.web.problems import problem
from signup.entrypoints.web.routes import CLIENT_GONE, PROBLEM_RESPONSE
from signup.settings import Settings

log = structlog.get_logger(__name__)
hooks_router = APIRouter()
HOOK_PATH = "/hooks/auth0"
_JSON_TYPES = frozenset({"application/json", "application/cloudevents+json"})


def authorised(header: str | None, settings: Settings) -> bool:
    """Whether `Authorization` carries the configured bearer token or basic credentials,
    compared in constant time (no early exit on the first differing byte)."""
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    token = settings.auth0_events_token
    if scheme == "bearer" and token is not None and len(token):
        return hmac.compare_digest(value.encode(), token.get_secret_value().encode())
    user, password = settings.auth0_events_username, settings.auth0_events_password
    if scheme == "basic" and user and password is not None:
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        given_user, colon, given_password = given.partition(b":")
        user_ok = hmac.compare_digest(given_user, user.encode())
        password_ok = hmac.compare_digest(given_password, password.get_secret_value().encode())
        return bool(colon) and user_ok and password_ok
    return False


def _challenge(settings: Settings) -> str:
    return 'Bearer realm="signup"' if settings.auth0_events_token else 'Basic realm="signup"'


def _answer(result: str) -> Response:
    metrics.AUTH0_EVENTS.labels(result).inc()
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


@hooks_router.post(
    HOOK_PATH,
    status_code=204,
    summary="Auth0's events (user.created): one user.new per account",
    responses={
        204: {"description": "Durable (or a repeat, or a type we ignore)"},
        400: {"description": "Not an Auth0 event we can read", **PROBLEM_RESPONSE},
        401: {"description": "Wrong or missing credentials", **PROBLEM_RESPONSE},
        404: {"description": "Off: no credential configured", **PROBLEM_RESPONSE},
        413: {"description": "Body too large", **PROBLEM_RESPONSE},
        415: {"description": "Not JSON", **PROBLEM_RESPONSE},
    },
)
async def auth0_events(request: Request) -> Response:
    container: Container = request.app.state.container
    settings = container.settings
    if not settings.auth0_events_enabled:
        return problem(404, "not-found", "Not found.")
    if not authorised(request.headers.get("authorization"), settings):
        metrics.AUTH0_EVENTS.labels("unauthorised").inc()
        log.warning("auth0_event.unauthorised")
        return problem(
            401,
            "unauthorised",
            "The event stream's credentials are missing or wrong.",
            title="Unauthorised",
            headers={"WWW-Authenticate": _challenge(settings)},
        )
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES:
        metrics.AUTH0_EVENTS.labels("unsupported_media_type").inc()
        return problem(415, "unsupported-media-type", "Send the event as application/json.")
    try:
        body = await request.body()
    except CLIENT_GONE:
        return problem(400, "client-disconnected", "The request body did not arrive in full.")
    try:
        delivery = read_delivery(body)
    except MalformedDelivery as exc:
        metrics.AUTH0_EVENTS.labels("malformed").inc()
        return problem(400, "malformed-event", str(exc))
    if not delivery.creation:
        return _answer("ignored")
    if delivery.account is None:
        # No e-mail address (some social providers give none): no user.new can be made.
        log.warning("auth0_event.unannounceable", auth0_event_id=delivery.event_id)
        return _answer("unannounceable")
    outcome = await container.external_accounts.announce(
        delivery.account, ORIGIN_AUTH0_EVENT, delivery.event_id
    )
    return _answer(outcome)
