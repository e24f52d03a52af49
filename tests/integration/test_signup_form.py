"""A site's form through the API: declared fields and consents validated by the same
definition the schemas show, recorded with the account, carried in `user.new`."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from signup.settings import Settings
from signup.testing.server import serving

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "form.example.toml"
PASSWORD = "violet tractor anthem"
TERMS_DE = "Ich akzeptiere die Nutzungsbedingungen."


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url, form_file=EXAMPLE)


@pytest.fixture
async def base(settings: Settings, bound_queue: AbstractQueue) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with http.post(url, data=orjson.dumps(body), headers=all_headers) as response:
        return response.status, await response.json(content_type=None)


async def rows(settings: Settings, query: str) -> list[Any]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(text(query)))
    finally:
        await engine.dispose()


GOOD = {
    "email": "ada@example.com",
    "password": PASSWORD,
    "fields": {"role": "developer", "birthday": "1815-12-10", "country": "GB", "company": "AE"},
    "consents": {"terms": True, "marketing": True},
}


async def test_fields_and_consents_reach_the_account_the_database_and_the_event(
    base: str, http: aiohttp.ClientSession, bound_queue: AbstractQueue, settings: Settings
) -> None:
    status, answer = await post(
        http, f"{base}/user/signup", GOOD, {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
    )
    assert status == 201, answer
    message = None
    for _ in range(150):
        message = await bound_queue.get(fail=False)
        if message is not None:
            break
        await asyncio.sleep(0.1)
    assert message is not None, "no user.new message arrived"
    await message.ack()
    data = orjson.loads(message.body)["data"]
    assert data["fields"] == GOOD["fields"]
    consents = {c["id"]: c for c in data["consents"]}
    assert set(consents) == {"terms", "marketing", "partner_offers"}  # every consent shown
    terms = consents["terms"]
    assert terms["version"] == "2026-12-01" and terms["accepted"] is True
    assert terms["language"] == "de"
    assert terms["text_sha256"] == hashlib.sha256(TERMS_DE.encode()).hexdigest()
    assert consents["partner_offers"]["accepted"] is False
    assert consents["marketing"]["marketing"] is True

    (user,) = await rows(settings, "SELECT user_metadata FROM users")
    assert orjson.loads(user.user_metadata) == {
        "fields": data["fields"],
        "consents": data["consents"],
    }
    stored = await rows(
        settings, "SELECT consent_id, version, accepted, language, text_sha256 FROM consent_records"
    )
    assert {(r.consent_id, r.version, bool(r.accepted), r.language) for r in stored} == {
        ("terms", "2026-12-01", True, "de"),
        ("marketing", "1", True, "de"),
        ("partner_offers", "1", False, "de"),
    }


async def test_the_language_of_the_link_wins_and_is_recorded(
    base: str, http: aiohttp.ClientSession, bound_queue: AbstractQueue, settings: Settings
) -> None:
    status, _ = await post(http, f"{base}/user/signup?lang=en", GOOD, {"Accept-Language": "de"})
    assert status == 201
    stored = await rows(settings, "SELECT language FROM consent_records")
    assert {r.language for r in stored} == {"en"}


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"consents": {"marketing": True}}, "consents.terms", "consent.required"),
        ({"consents": {"terms": False}}, "consents.terms", "consent.required"),
        ({"consents": {"terms": "yes"}}, "consents.terms", "consent.required"),
        ({"consents": {"terms": True, "cookies": True}}, "consents.cookies", "field.unknown"),
        ({"fields": {"company": "x"}}, "fields.role", "field.required"),
        ({"fields": {"role": "boss"}}, "fields.role", "field.not_an_option"),
        (
            {"fields": {"role": "other", "birthday": "2026-02-30"}},
            "fields.birthday",
            "field.not_a_date",
        ),
        ({"fields": {"role": "other", "country": "XX"}}, "fields.country", "field.not_an_option"),
        (
            {"fields": {"role": "other", "vat_id": "de12"}},
            "fields.vat_id",
            "field.pattern_mismatch",
        ),
        ({"fields": {"role": "other", "company": "x" * 101}}, "fields.company", "field.too_long"),
        (
            {"fields": {"role": "other", "newsletter_digest": "true"}},
            "fields.newsletter_digest",
            "field.not_boolean",
        ),
        ({"fields": {"role": "other", "admin": True}}, "fields.admin", "field.unknown"),
    ],
)
async def test_a_refused_form_is_a_422_on_the_field_and_writes_nothing(
    base: str,
    http: aiohttp.ClientSession,
    settings: Settings,
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    status, problem = await post(http, f"{base}/user/signup", {**GOOD, **change})
    assert status == 422, problem
    assert (field, code) in {(e["field"], e["code"]) for e in problem["errors"]}, problem
    for table in ("users", "signups", "outbox", "consent_records"):
        assert await rows(settings, f"SELECT 1 FROM {table}") == []


async def test_no_consents_at_all_names_each_required_one(
    base: str, http: aiohttp.ClientSession
) -> None:
    body = {k: v for k, v in GOOD.items() if k != "consents"}
    status, problem = await post(http, f"{base}/user/signup", body)
    assert status == 422
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [
        ("consents.terms", "consent.required")
    ]


async def test_the_schemas_show_the_form(base: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base}/signup/schema.json") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/schema+json")
        schema = await response.json(content_type=None)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    fields = schema["properties"]["fields"]
    assert fields["required"] == ["role"]
    assert fields["properties"]["role"]["enum"] == ["developer", "manager", "other"]
    assert fields["properties"]["role"]["x-label"] == {"en": "Your role", "de": "Ihre Rolle"}
    # An optional field may be absent or null.
    birthday, null = fields["properties"]["birthday"]["anyOf"]
    assert birthday["format"] == "date" and null == {"type": "null"}
    vat_id = fields["properties"]["vat_id"]["anyOf"][0]
    assert vat_id["pattern"] == "^(?:[A-Z]{2}[A-Z0-9]{2,18})$"
    assert (vat_id["minLength"], vat_id["maxLength"]) == (4, 20)
    consents = schema["properties"]["consents"]
    assert consents["required"] == ["terms"]
    assert consents["properties"]["terms"]["const"] is True
    assert consents["properties"]["terms"]["x-version"] == "2026-12-01"
    assert set(schema["required"]) >= {"email", "password", "fields", "consents"}
    assert schema["additionalProperties"] is False


async def test_a_consent_text_changed_without_a_new_version_is_refused_at_start(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from signup.adapters.form_file import parse_form
    from signup.bootstrap import bootstrap
    from signup.service_layer.consent_texts import ConsentTextChanged, check_consent_texts

    def form(text_de: str, version: str = "1") -> Any:
        return parse_form(
            f'[[consents]]\nid = "terms"\nversion = "{version}"\nrequired = true\n'
            f'text = {{ en = "I accept.", de = "{text_de}" }}\n'
        )

    container = bootstrap(make_settings(database_url=database_url))
    now = datetime.now(UTC)
    try:
        assert await check_consent_texts(container.uow, form("Ich stimme zu."), now) == 2
        assert await check_consent_texts(container.uow, form("Ich stimme zu."), now) == 0
        with pytest.raises(ConsentTextChanged) as caught:
            await check_consent_texts(container.uow, form("Ich stimme zu!"), now)
        assert "consent 'terms' version '1' (de)" in str(caught.value)
        assert "new version" in str(caught.value)
        # The changed text under a new version is fine, and remembered in turn.
        assert await check_consent_texts(container.uow, form("Ich stimme zu!", "2"), now) == 2
    finally:
        await container.aclose()


@pytest.mark.parametrize(
    ("language", "company", "terms"),
    [("en", "Company", "I accept the terms of service."), ("de", "Firma", TERMS_DE)],
)
async def test_the_page_shows_the_form_in_the_language_asked(
    base: str, http: aiohttp.ClientSession, language: str, company: str, terms: str
) -> None:
    async with http.get(f"{base}/signup?lang={language}") as response:
        assert response.status == 200
        page = await response.text()
    # Each control has its label, and its help and error are tied to it.
    assert f'<label class="field__label" for="fields.company">{company} ' in page
    assert 'id="fields.company" name="fields.company" type="text"' in page
    assert 'maxlength="100"' in page
    assert 'aria-describedby="fields.company-help fields.company-error"' in page
    assert 'id="fields.company-error" data-error-for="fields.company"' in page
    assert '<select class="field__input" id="fields.role" name="fields.role" required' in page
    assert '<option value="developer">developer</option>' in page
    assert 'id="fields.birthday" name="fields.birthday" type="date"' in page
    assert 'autocomplete="country"' in page and '<option value="DE">' in page
    assert 'type="checkbox" value="true"\n' in page or 'type="checkbox"' in page
    assert f'<label class="field__label" for="consents.terms">{terms} ' in page
    assert 'id="consents.terms" name="consents.terms" type="checkbox"' in page
    # signup.js learns what to send where.
    assert "data-extra-fields=" in page and "consents.marketing" in page


async def test_without_a_form_the_page_is_as_before(
    make_settings: Callable[..., Settings], http: aiohttp.ClientSession
) -> None:
    async with serving(make_settings()) as url, http.get(f"{url}/signup") as response:
        page = await response.text()
    assert 'id="fields.' not in page and 'id="consents.' not in page
    assert "data-extra-fields='[]'" in page
