"""`GET /signup/verify?token=…`: the welcome e-mail's verification link (local accounts).

Thin: the use case (`service_layer.verification`) decides; this page says what became
of the link, in the sign-up page's frame (`templates/verify.html`, brand-first), under
the page's Content-Security-Policy. Answers: 200 verified now; 410 used or expired;
400 not a link we made; 404 when no link is sent (SIGNUP_VERIFY_KEY unset, or Auth0).
GET only: HEAD is 405, so nothing that only looks at a link can use it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from signup.bootstrap import Container
from signup.entrypoints.web.localisation import Localisation
from signup.entrypoints.web.page import PageTemplates
from signup.service_layer.verification import VERIFY_PATH, Verification, VerificationResult
from signup.settings import Settings

log = structlog.get_logger(__name__)
VERIFY_TEMPLATE = "verify.html"
# The page names the account; a link's answer is never stored or shared by a cache.
_HEADERS = {"Cache-Control": "no-store"}
_HTML: dict[str, Any] = {"content": {"text/html": {}}}


@dataclass(frozen=True)
class _Wording:
    status: int
    heading: str
    lede: str
    detail: str | None = None


def _wording(result: VerificationResult, _: Callable[[str], str]) -> _Wording:
    email = {"email": result.email or ""}
    match result.outcome:
        case Verification.VERIFIED:
            return _Wording(
                200,
                _("Your e-mail address is confirmed"),
                _("Thank you: %(email)s is confirmed.") % email,
            )
        case Verification.ALREADY_VERIFIED:
            return _Wording(
                410,
                _("This link was already used"),
                _("%(email)s is already confirmed. There is nothing more to do.") % email,
            )
        case Verification.EXPIRED:
            return _Wording(
                410,
                _("This link has expired"),
                _("The link to confirm %(email)s is no longer valid.") % email,
                _(
                    "Links to confirm an address work for a limited time. Your account is "
                    "there all the same."
                ),
            )
        case _:
            return _Wording(
                400,
                _("This link is not valid"),
                _("We could not read this confirmation link."),
                _(
                    "Your e-mail program may have cut it off: copy the whole link from the "
                    "e-mail into your browser's address bar."
                ),
            )


def verify_router(settings: Settings, localisation: Localisation | None = None) -> APIRouter:
    templates = PageTemplates(settings, localisation)
    router = APIRouter(tags=["page"])

    @router.get(
        VERIFY_PATH,
        response_class=HTMLResponse,
        summary="Confirm a local account's e-mail address (the welcome e-mail's link)",
        responses={
            400: {"description": "Not a link the service made", **_HTML},
            404: {
                "description": "This service sends no verification links",
                "content": {"application/problem+json": {}},
            },
            410: {"description": "The link was already used, or has expired", **_HTML},
        },
    )
    async def verify_email(request: Request, token: str = "") -> HTMLResponse:
        container: Container = request.app.state.container
        if container.verification is None:
            raise StarletteHTTPException(404, "Not Found")
        result = await container.verification.verify(token)
        log.info("email.verification", outcome=result.outcome.value)
        language = templates.localisation.language_of(request)
        _ = templates.localisation.translations(language).gettext
        wording = _wording(result, _)
        html = templates.render(
            VERIFY_TEMPLATE,
            language,
            outcome=result.outcome.value,
            verified=result.outcome in (Verification.VERIFIED, Verification.ALREADY_VERIFIED),
            heading=wording.heading,
            lede=wording.lede,
            detail=wording.detail,
            continue_label=_("Go to %(site)s") % {"site": settings.site_name},
        )
        headers = {**_HEADERS, "Content-Language": language}
        return HTMLResponse(html, status_code=wording.status, headers=headers)

    return router
