"""ASGI middleware in front of every request: request id, size limit, cross-site refusal,
security headers. Plain ASGI (not BaseHTTPMiddleware) because it is on the hot path."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signup.addresses import normalise_origin
from signup.entrypoints.web.problems import problem

MAX_BODY = 16 * 1024
# Server-to-server endpoints (Auth0's events, hooks.py): authenticated by a credential no
# browser sends on its own, so the cross-site refusal (a browser's form posted from
# another site) does not apply; their bodies (a whole user profile) may be larger.
SERVER_TO_SERVER = ("/hooks/",)
SERVER_TO_SERVER_MAX_BODY = 64 * 1024
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The operations docs page (ops.py) is plain HTML: no script, no style, nothing fetched.
DOCS_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_PATHS = ("/docs",)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, allowed_origins: Iterable[str], max_body: int = MAX_BODY
    ) -> None:
        self.app = app
        # The service's own origin is among these (Settings.origins, from SIGNUP_SITE_URL),
        # never taken from the request's Host: a DNS-rebinding page names its own host.
        self.allowed = frozenset(
            filter(None, (normalise_origin(o, any_path=True) for o in allowed_origins))
        )
        self.max_body = max_body

    def cross_site(self, scope: Scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is not None:
            return normalise_origin(origin) not in self.allowed
        return _header(scope, b"sec-fetch-site") == "cross-site"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        path: str = scope["path"]
        csp = (
            DOCS_CSP
            if path.startswith(DOCS_PATHS)
            else (API_CSP if path.startswith(("/user/", *SERVER_TO_SERVER)) else PAGE_CSP)
        )
        extra = [
            (b"x-request-id", request_id.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        ]
        if csp:
            extra.append((b"content-security-policy", csp.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        hook = path.startswith(SERVER_TO_SERVER)
        max_body = SERVER_TO_SERVER_MAX_BODY if hook else self.max_body
        try:
            if not hook and scope["method"] in UNSAFE and self.cross_site(scope):
                response = problem(
                    403,
                    "cross-site",
                    "This form may only be sent from the site's own pages.",
                )
                await response(scope, receive, send_with_headers)
                return
            declared = _header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > max_body):
                await self._too_large(scope, receive, send_with_headers, max_body)
                return
            await self.app(scope, self._limited(receive, max_body), send_with_headers)
        except BodyTooLarge:
            await self._too_large(scope, receive, send_with_headers, max_body)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    def _limited(self, receive: Receive, max_body: int) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body:
                    raise BodyTooLarge
            return message

        return limited

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
        response = problem(
            413,
            "body-too-large",
            f"The request body may be at most {max_body // 1024} KiB.",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
