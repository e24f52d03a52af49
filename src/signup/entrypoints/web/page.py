"""The branded sign-up page (`GET /`, `GET /signup`) and its static files (`/static`).

Branding comes from the settings (`site_name`, `site_url`) and, optionally, from a site's
own folder `settings.brand_dir` that overrides the package's files without editing them:

- `brand_dir/templates/` is searched before the package's templates (a Jinja2 ChoiceLoader),
  so a site can replace `signup.html` or just one partial such as `partials/header.html`;
- `brand_dir/static/` is searched before the package's static folder, file by file
  (`logo.svg`, `favicon.svg`, …), and `brand_dir/static/brand.css`, when present, is
  linked after the package's stylesheet so that it can override the colours.

The page carries no inline script or style, so that it works under the service's
Content-Security-Policy (`script-src 'self'; style-src 'self'`). Nothing here does I/O
at import time: the templates are loaded and the page rendered when the router is built.
"""

from __future__ import annotations

import gettext
import hashlib
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from signup.entrypoints.web.challenge import CHALLENGE_PATH
from signup.entrypoints.web.form_model import FormRules
from signup.entrypoints.web.hand_over import HandOver
from signup.entrypoints.web.localisation import Localisation
from signup.settings import Settings

__all__ = ["PageTemplates", "mount_static", "page_context", "page_router", "render_page"]

_HERE = Path(__file__).resolve().parent
PACKAGE_TEMPLATES = _HERE / "templates"
PACKAGE_STATIC = _HERE / "static"
STATIC_PREFIX = "/static"
PAGE_TEMPLATE = "signup.html"
ALTCHA_DIR = "vendor/altcha"
PASSWORD_MIN_LENGTH = 8
REQUEST_TIMEOUT_MS = 15_000

# The page itself is always revalidated; the assets it names carry a digest of their
# content (`?v=…`), so a browser never keeps a stale stylesheet or script after a
# deployment or a brand change.
_PAGE_HEADERS = {"Cache-Control": "no-cache"}


def _static_dirs(settings: Settings) -> list[Path]:
    """The static folders in lookup order: the site's own first, then the package's."""
    dirs: list[Path] = []
    if settings.brand_dir is not None:
        brand_static = Path(settings.brand_dir) / "static"
        if brand_static.is_dir():
            dirs.append(brand_static)
    dirs.append(PACKAGE_STATIC)
    return dirs


def _find_static(settings: Settings, name: str) -> Path | None:
    for directory in _static_dirs(settings):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _asset_url(settings: Settings, name: str) -> str | None:
    """`/static/<name>?v=<digest>` for the file a browser will get, or None if there is none."""
    path = _find_static(settings, name)
    if path is None:
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{STATIC_PREFIX}/{name}?v={digest}"


def _environment(
    settings: Settings, translations: gettext.NullTranslations | None = None
) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if settings.brand_dir is not None:
        loaders.append(jinja2.FileSystemLoader(Path(settings.brand_dir) / "templates"))
    loaders.append(jinja2.FileSystemLoader(PACKAGE_TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "j2"), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    # `_()` and `{% trans %}` in the templates: this language's catalogue (newstyle:
    # the text is escaped, `%(name)s` filled in by gettext itself).
    env.install_gettext_translations(  # type: ignore[attr-defined]
        translations or gettext.NullTranslations(), newstyle=True
    )
    return env


# The script's words (signup.js, `TEXT`): given to it in the page's language.
SCRIPT_TEXT = {
    "emailRequired": "Enter your e-mail address.",
    "emailShape": "Enter an e-mail address in the form name@example.com.",
    "passwordRequired": "Choose a password.",
    "passwordShort": "Use at least {n} characters.",
    "fixFieldsOne": "Please correct the highlighted field.",
    "fixFieldsMany": "Please correct the {n} highlighted fields.",
    "alreadyRegistered": "This e-mail address is already registered. Sign in instead, or "
    "use a different address.",
    "signIn": "Sign in",
    "tooMany": "Too many attempts.",
    "unavailable": "We can't create accounts right now.",
    "tryAgainInOne": "Please try again in 1 second.",
    "tryAgainInMany": "Please try again in {n} seconds.",
    "tryAgainSoon": "Please try again in a moment.",
    "network": "We couldn't reach the server. Check your internet connection and try again "
    "— nothing was lost.",
    "timeout": "The server is taking too long to answer. Please try again in a moment.",
    "server": "Something went wrong on our side. Please try again in a moment.",
    "submitting": "Creating your account…",
    "checking": "Checking your browser…",
    "checkFailed": "We couldn't check your browser. Reload the page and try again.",
    "show": "Show",
    "hide": "Hide",
}


# The proof-of-work widget's words (ALTCHA's `strings`), in the page's language; the
# English is ALTCHA's own.
CHALLENGE_TEXT = {
    "label": "I'm not a robot",
    "verifying": "Checking your browser…",
    "verified": "Verified",
    "verify": "Verify",
    "loading": "Loading…",
    "reload": "Reload",
    "error": "Verification failed. Try again later.",
    "expired": "Verification expired. Try again.",
    "verificationRequired": "Verification required!",
    "waitAlert": "Checking your browser… please wait.",
}


class PageTemplates:
    """The branded pages' templates in each language (one environment per language)."""

    def __init__(self, settings: Settings, localisation: Localisation | None = None) -> None:
        self.settings = settings
        self.localisation = localisation or Localisation.from_settings(settings)
        self._environments: dict[str, jinja2.Environment] = {}

    def environment(self, language: str) -> jinja2.Environment:
        env = self._environments.get(language)
        if env is None:
            env = _environment(self.settings, self.localisation.translations(language))
            self._environments[language] = env
        return env

    def context(self, language: str) -> dict[str, Any]:
        """The brand, and what depends on the language: `lang`, the script's words."""
        translate = self.localisation.translations(language).gettext
        return {
            **page_context(self.settings),
            "lang": language,
            "script_text": {key: translate(text) for key, text in SCRIPT_TEXT.items()},
            "challenge_text": {key: translate(text) for key, text in CHALLENGE_TEXT.items()},
            **form_values(None, language),  # the page's router passes the site's form
        }

    def render(self, template: str, language: str, **values: Any) -> str:
        context = {**self.context(language), **values}
        return self.environment(language).get_template(template).render(context)


def page_context(settings: Settings) -> dict[str, Any]:
    """What every branded page's template gets: the brand, the assets' URLs."""
    hand_over = HandOver.from_settings(settings)
    required = {name: _asset_url(settings, name) for name in ("signup.css", "signup.js")}
    missing = [name for name, url in required.items() if url is None]
    if missing:
        raise RuntimeError(f"sign-up page assets missing: {', '.join(missing)}")
    context = {
        "site_name": settings.site_name,
        "site_url": settings.site_url.rstrip("/") or "/",
        "css_url": required["signup.css"],
        "js_url": required["signup.js"],
        # brand.css only ever comes from the site's own folder: the package ships none.
        "brand_css_url": _asset_url(settings, "brand.css"),
        "logo_url": _asset_url(settings, "logo.svg"),
        "favicon_url": _asset_url(settings, "favicon.svg"),
        "signup_endpoint": "/user/signup",
        "sign_in_url": hand_over.sign_in_url,
        "continue_url": hand_over.continue_url,
        "continue_with_login_hint": hand_over.continue_with_login_hint,
        "password_min_length": PASSWORD_MIN_LENGTH,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "challenge": _challenge_widget(settings),
    }
    return context


def _challenge_widget(settings: Settings) -> dict[str, str] | None:
    """SIGNUP_CHALLENGE=pow: the vendored ALTCHA widget's files and where it fetches its
    challenge (static/vendor/altcha/VENDORED.txt says which release); None when off."""
    if settings.challenge == "off":
        return None
    assets = {
        f"{kind}_url": _asset_url(settings, f"{ALTCHA_DIR}/{name}")
        for kind, name in (("js", "altcha.js"), ("css", "altcha.css"), ("worker", "worker.js"))
    }
    missing = [kind for kind, url in assets.items() if url is None]
    if missing:
        raise RuntimeError(f"the challenge widget's files are missing: {', '.join(missing)}")
    return {"url": CHALLENGE_PATH, **{kind: str(url) for kind, url in assets.items()}}


def render_page(
    settings: Settings, language: str = "en", localisation: Localisation | None = None
) -> str:
    """The sign-up page's HTML for these settings in `language` (templates brand-first)."""
    return PageTemplates(settings, localisation).render(PAGE_TEMPLATE, language)


def form_values(rules: FormRules | None, language: str) -> dict[str, Any]:
    """The site's declared fields and consents as the page shows them in `language`."""
    if rules is None or rules.form.empty:
        return {"form_fields": [], "consents": [], "extra_fields": []}
    fields = rules.labels(language)
    consents = rules.consent_texts(language)
    return {
        "form_fields": fields,
        "consents": consents,
        # What signup.js sends, and where (`fields.<name>`, `consents.<id>`).
        "extra_fields": [{"name": f"fields.{f['name']}", "kind": f["type"]} for f in fields]
        + [{"name": f"consents.{c['id']}", "kind": "consent"} for c in consents],
    }


def page_router(
    settings: Settings, localisation: Localisation | None = None, rules: FormRules | None = None
) -> APIRouter:
    """`GET`/`HEAD` `/` and `/signup`: the branded sign-up page in the request's language
    (`?lang=`, else `Accept-Language`), rendered once per language, with the site's form."""
    templates = PageTemplates(settings, localisation)
    # Every language rendered now: a broken template or catalogue stops the start.
    pages = {
        language: templates.render(PAGE_TEMPLATE, language, **form_values(rules, language))
        for language in templates.localisation.languages.available
    }
    router = APIRouter(tags=["page"])

    @router.get("/signup", response_class=HTMLResponse, summary="The sign-up page")
    async def signup_page(request: Request) -> HTMLResponse:
        language = templates.localisation.language_of(request)
        return HTMLResponse(
            pages[language],
            headers={**_PAGE_HEADERS, "Content-Language": language, "Vary": "Accept-Language"},
        )

    # HEAD is answered as GET is, without the body (Starlette sends only the headers of
    # a HEAD); FastAPI routes do not add it by themselves. Out of the schema: one
    # operation a path is what clients generated from it expect.
    router.add_api_route(
        "/signup",
        signup_page,
        methods=["HEAD"],
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    router.add_api_route(
        "/",
        signup_page,
        methods=["GET", "HEAD"],
        response_class=HTMLResponse,
        include_in_schema=False,
    )

    @router.api_route("/signup/", methods=["GET", "HEAD"], include_in_schema=False)
    async def signup_page_slash() -> RedirectResponse:
        # The app redirects no trailing slash by itself (a POST would be re-sent to a
        # URL built from Host): a typed `/signup/` gets a relative Location, no Host in it.
        return RedirectResponse("/signup", status_code=308)

    return router


class _LayeredStaticFiles(StaticFiles):
    """Static files looked up in several folders in order: the first that has the file wins."""

    def __init__(self, directories: list[Path]) -> None:
        super().__init__(directory=directories[-1])
        self.all_directories = list(directories)


def mount_static(app: FastAPI, settings: Settings) -> None:
    """Mount `/static`: the package's assets, each replaced by `brand_dir/static/<same name>`."""
    app.mount(STATIC_PREFIX, _LayeredStaticFiles(_static_dirs(settings)), name="static")
