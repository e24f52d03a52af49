"""Two languages and the site's own: the catalogues, their completeness, the page, the
field errors by code, the welcome e-mail and the verification page's words."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from signup.adapters.catalogues import PACKAGE_LOCALE, CatalogueError, Catalogues
from signup.domain.events import (
    SignupAttempted,
    SignupAttemptedData,
    UserRegistered,
    UserRegisteredData,
)
from signup.entrypoints.web.error_text import ERROR_TEXT, localise_errors, shared_code
from signup.entrypoints.web.language import Languages
from signup.entrypoints.web.localisation import Localisation
from signup.entrypoints.web.page import render_page
from signup.service_layer.consumers import Brand, compose_attempt_notice, compose_welcome
from signup.service_layer.verification import VerificationLinks
from signup.settings import Settings
from signup.testing.messages import gather

SHIPPED = sorted(p.name for p in PACKAGE_LOCALE.iterdir() if p.is_dir())
PLACEHOLDER = re.compile(r"%\([a-z]+\)s|\{n\}|<[a-z/][^>]*>")


@pytest.mark.parametrize("language", SHIPPED)
def test_each_shipped_catalogue_has_every_message_with_its_placeholders(language: str) -> None:
    path = PACKAGE_LOCALE / language / "LC_MESSAGES" / "signup.po"
    with path.open("rb") as source:
        catalogue = read_po(source)
    missing, broken = [], []
    for message in gather():
        if not message.id:
            continue
        found = catalogue.get(message.id, context=message.context)
        if found is None or not found.string or found.fuzzy:
            missing.append((message.context, message.id))
        elif sorted(PLACEHOLDER.findall(str(found.string))) != sorted(
            PLACEHOLDER.findall(str(message.id))
        ):
            broken.append((message.id, found.string))
    assert not missing, f"{language}: untranslated: {missing}"
    assert not broken, f"{language}: placeholders or markup differ: {broken}"


@pytest.mark.parametrize("language", SHIPPED)
def test_no_message_is_in_a_catalogue_twice(language: str) -> None:
    # Babel reads a repeated entry silently (the last one wins); msgfmt refuses the file.
    text = (PACKAGE_LOCALE / language / "LC_MESSAGES" / "signup.po").read_text("utf-8")
    entries = re.findall(r'^(?:msgctxt (".*")\n)?msgid ((?:".*"\n)+)', text, re.M)
    repeated = sorted({entry for entry in entries if entries.count(entry) > 1})
    assert not repeated, f"{language}: entries given twice: {repeated}"


def test_the_package_ships_english_and_german() -> None:
    catalogues = Catalogues.load()
    assert catalogues.languages == ("en", "de")
    assert catalogues.translations("de").gettext("Create account") == "Konto erstellen"
    assert catalogues.translations("en").gettext("Create account") == "Create account"
    assert catalogues.translations("xx").gettext("Create account") == "Create account"


def _brand_catalogue(brand: Path, language: str, entries: dict[str, str]) -> None:
    folder = brand / "locale" / language / "LC_MESSAGES"
    folder.mkdir(parents=True)
    body = "".join(f'msgid "{k}"\nmsgstr "{v}"\n\n' for k, v in entries.items())
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    (folder / "signup.po").write_text(header + body, encoding="utf-8")


def test_a_brand_folder_adds_its_wording_and_languages(tmp_path: Path) -> None:
    _brand_catalogue(tmp_path, "de", {"Create account": "Jetzt loslegen"})
    _brand_catalogue(tmp_path, "en", {"Create account": "Join the club"})
    _brand_catalogue(tmp_path, "fr", {"Create account": "Créer un compte"})
    catalogues = Catalogues.load(tmp_path)
    assert catalogues.languages == ("en", "de", "fr")
    de = catalogues.translations("de")
    assert de.gettext("Create account") == "Jetzt loslegen"  # the site's own wording
    assert de.gettext("Password") == "Passwort"  # the package's for the rest
    assert catalogues.translations("en").gettext("Create account") == "Join the club"
    fr = catalogues.translations("fr")
    assert fr.gettext("Create account") == "Créer un compte"
    assert fr.gettext("Password") == "Password"  # English where the site gave no words

    settings = Settings(_env_file=None, brand_dir=tmp_path)  # type: ignore[call-arg]
    localisation = Localisation.from_settings(settings)
    assert localisation.languages.choose(accept_language="fr-CA, de;q=0.5") == "fr"
    page = render_page(settings, "fr", localisation)
    assert '<html lang="fr">' in page and "Créer un compte" in page


def test_a_broken_brand_catalogue_stops_the_start(tmp_path: Path) -> None:
    folder = tmp_path / "locale" / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "signup.po").write_text('msgid "x"\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"signup\.po"):
        Catalogues.load(tmp_path)


def test_a_translation_with_a_placeholder_of_its_own_stops_the_start(tmp_path: Path) -> None:
    _brand_catalogue(tmp_path, "de", {"Visit %(site)s": "%(sitename)s besuchen"})
    with pytest.raises(CatalogueError, match=r"%\(sitename\)s"):
        Catalogues.load(tmp_path)


@pytest.mark.parametrize(
    ("lang", "header", "chosen"),
    [
        ("de", None, "de"),
        (None, "de-AT,de;q=0.9,en;q=0.8", "de"),
        (None, "fr-FR, en;q=0.5", "en"),
        ("xx", "de", "de"),
        ("en", "de", "en"),
        (None, None, "en"),
    ],
)
def test_the_language_is_chosen_from_the_query_then_the_header(
    lang: str | None, header: str | None, chosen: str
) -> None:
    assert Languages(Catalogues.load().languages).choose(lang, header) == chosen


def test_the_page_speaks_german() -> None:
    page = render_page(Settings(_env_file=None, sign_in_url="/login"), "de")  # type: ignore[call-arg]
    assert '<html lang="de">' in page
    assert "<title>Konto erstellen · Naked Coders</title>" in page
    assert "Sie haben schon ein Konto?" in page and ">Anmelden</a>" in page
    assert 'action="/user/signup"' in page
    assert '"passwordShort": "Verwenden Sie mindestens {n} Zeichen."' in page
    english = render_page(Settings(_env_file=None))  # type: ignore[call-arg]
    assert '<html lang="en">' in english and "Create your account" in english


def test_field_errors_are_translated_by_their_code() -> None:
    de = Catalogues.load().translations("de")
    errors = [
        {
            "field": "password",
            "message": "Use at least 8 characters.",
            "code": "password.too_short",
        },
        {"field": "given_name", "message": "…", "code": "given_name.link"},
        {"field": "fields.company", "message": "…", "code": "fields.company.too_long"},
        {"field": "consents.terms", "message": "…", "code": "consents.terms.required"},
        {"field": "x", "message": "Kept as it is.", "code": "x.something_new"},
    ]
    assert [e["message"] for e in localise_errors(errors, de)] == [
        "Verwenden Sie mindestens 8 Zeichen.",
        "Ein Name enthält keine Links oder Webadressen.",
        "Das ist zu lang.",
        "Bitte stimmen Sie zu, um Ihr Konto zu erstellen.",
        "Kept as it is.",
    ]
    # English keeps the validation's own message, which may say more.
    en = Catalogues.load().translations("en")
    detailed = [{"field": "email", "message": "Enter a valid … (why)", "code": "email.invalid"}]
    assert localise_errors(detailed, en) == detailed
    assert shared_code("family_name.too_long") == "name.too_long" in ERROR_TEXT


def _event(language: str | None) -> UserRegistered:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    return UserRegistered(
        id="0193a5c4-7e1f-7c3a-9d2e-5b8f0a1c2d3e",
        source="urn:signup:test",
        time=now,
        data=UserRegisteredData(
            user_id="local|0123456789abcdef01234567",
            email="ada@example.com",
            email_verified=False,
            given_name="Ada",
            family_name=None,
            name="Ada",
            created_at=now,
            identity_provider="local",
            language=language,
        ),
    )


def _brand() -> Brand:
    catalogues = Catalogues.load()
    links = VerificationLinks(
        key=b"k" * 32,
        site_url="https://nc.test",
        ttl=timedelta(days=5),
        clock=lambda: datetime(2026, 12, 5, tzinfo=UTC),
    )
    return Brand(
        site_name="Naked Coders",
        site_url="https://nc.test",
        mail_from="hi@nc.test",
        verification=links,
        translations=catalogues.translations,
        languages=catalogues.languages,
    )


def _parts(language: str | None) -> tuple[str, str, str]:
    message = compose_welcome(_event(language), _brand())
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(message["Subject"]), str(text.get_content()), str(html.get_content())


def test_the_welcome_email_speaks_the_sign_ups_language() -> None:
    subject, text, html = _parts("de")
    assert subject == "Willkommen bei Naked Coders"
    assert text.startswith("Hallo Ada,\n\nwillkommen bei Naked Coders!")
    assert "Bitte bestätigen Sie, dass diese Adresse Ihnen gehört" in text
    assert "/signup/verify?token=" in text and "&lang=de" in text
    assert '<html lang="de">' in html and "E-Mail-Adresse bestätigen" in html
    assert "Ihr Naked Coders-Team" in text


@pytest.mark.parametrize("language", [None, "en", "fr", "en-GB"])
def test_an_unknown_or_missing_language_gets_english(language: str | None) -> None:
    subject, text, html = _parts(language)
    assert subject == "Welcome to Naked Coders"
    assert text.startswith("Hi Ada,\n\nwelcome to Naked Coders!")
    assert "lang=" not in text and '<html lang="en">' in html


def test_a_regional_tag_finds_its_language() -> None:
    subject, _, _ = _parts("de-AT")
    assert subject == "Willkommen bei Naked Coders"


def _notice(language: str | None) -> tuple[str, str, str]:
    at = datetime(2026, 12, 5, 7, 30, tzinfo=UTC)
    event = SignupAttempted(
        id="0193a5c4-7e1f-7c3a-9d2e-5b8f0a1c2d3e",
        source="urn:signup:test",
        time=at,
        data=SignupAttemptedData(
            user_id="local|abc", email="ada@example.com", attempted_at=at, language=language
        ),
    )
    message = compose_attempt_notice(event, replace(_brand(), sign_in_url="https://nc.test/in"))
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(message["Subject"]), str(text.get_content()), str(html.get_content())


def test_the_owner_notice_speaks_the_attempts_language() -> None:
    subject, text, html = _notice("de")
    assert subject == "Jemand wollte mit Ihrer Adresse ein Konto bei Naked Coders anlegen"
    assert text.startswith("Hallo,\n\njemand hat am 2026-12-05 07:30 UTC versucht,")
    assert "(ada@example.com)" in text and "https://nc.test/in" in text
    assert "Ihr Naked Coders-Team" in text
    assert '<html lang="de">' in html and "Bei Naked Coders anmelden" in html
    assert "(<strong>ada@example.com</strong>)" in html
    assert "Someone" not in subject + text + html and "someone" not in text + html


@pytest.mark.parametrize("language", [None, "en", "fr"])
def test_an_owner_notice_without_a_known_language_is_english(language: str | None) -> None:
    subject, text, html = _notice(language)
    assert subject == "Someone tried to create a Naked Coders account with your address"
    assert text.startswith("Hello,\n\nsomeone tried to create a Naked Coders account")
    assert '<html lang="en">' in html and "Sign in to Naked Coders" in html
