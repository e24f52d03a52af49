"""The language of a request: `?lang=` first, then Accept-Language, then English."""

from __future__ import annotations

import pytest

from signup.entrypoints.web.language import Languages, accepted_languages

LANGUAGES = Languages()


@pytest.mark.parametrize(
    ("lang", "header", "chosen"),
    [
        (None, None, "en"),
        (None, "de", "de"),
        (None, "de-AT,de;q=0.9,en;q=0.8", "de"),
        (None, "fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4", "de"),
        (None, "en;q=0.2, de;q=0.8", "de"),  # q decides, not the order
        (None, "de;q=0, en", "en"),  # q=0: not wanted at all
        (None, "fr, ja", "en"),
        (None, "DE-de", "de"),
        (None, "*", "en"),
        (None, "de;q=nonsense, en", "en"),
        ("de", "en", "de"),  # the link's choice wins over the browser's
        ("DE", None, "de"),
        ("fr", "de", "de"),  # not offered: the header decides
        ("x" * 100, "de", "de"),
    ],
)
def test_the_choice(lang: str | None, header: str | None, chosen: str) -> None:
    assert LANGUAGES.choose(lang, header) == chosen


def test_a_site_s_own_languages_are_offered() -> None:
    site = Languages(["en", "de", "fr"])
    assert site.choose(None, "fr-CA, en;q=0.5") == "fr"
    assert site.for_request({"lang": "fr"}, {"accept-language": "de"}) == "fr"
    assert Languages(["de"]).available == ("en", "de")  # the default is always offered


def test_a_huge_header_is_read_only_so_far() -> None:
    header = ",".join(["xx"] * 10_000) + ",de"
    assert accepted_languages(header) == ["xx"] * 16
    assert LANGUAGES.choose(None, header) == "en"
