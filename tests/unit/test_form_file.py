"""The form definition's reader: good files load whole, bad ones are refused with the line
and the problem."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from signup.adapters.form_file import FormFileError, load_form, parse_form

ROOT = Path(__file__).resolve().parents[2]
DESIGN_EXAMPLE = """\
[[fields]]
name = "company"
type = "text"
required = false
max_length = 100
label = { en = "Company", de = "Firma" }

[[fields]]
name = "role"
type = "select"
required = true
options = ["developer", "manager", "other"]
label = { en = "Your role", de = "Ihre Rolle" }

[[consents]]
id = "terms"
version = "2026-12-01"
required = true
text = { en = "I accept the terms of service.", de = "Ich akzeptiere die Nutzungsbedingungen." }

[[consents]]
id = "marketing"
version = "1"
required = false
text = { en = "Send me news about Naked Coders products.", de = "Schickt mir Neuigkeiten \
zu Produkten von Naked Coders." }
"""


def test_the_design_s_example_loads() -> None:
    form = parse_form(DESIGN_EXAMPLE)
    assert [(f.name, f.type, f.required) for f in form.fields] == [
        ("company", "text", False),
        ("role", "select", True),
    ]
    assert form.fields[0].max_length == 100 and form.fields[0].line == 1
    assert form.fields[1].option_values() == ("developer", "manager", "other")
    terms, marketing = form.consents
    assert (terms.id, terms.version, terms.required, terms.marketing) == (
        "terms",
        "2026-12-01",
        True,
        False,
    )
    assert (marketing.required, marketing.marketing, marketing.line) == (False, True, 21)
    assert form.languages() == ("en", "de")


def test_the_shipped_example_loads_with_every_field_type() -> None:
    form = load_form(ROOT / "docs" / "form.example.toml")
    assert {f.type for f in form.fields} == {"text", "checkbox", "select", "date", "country"}
    assert {c.id for c in form.consents} == {"terms", "marketing", "partner_offers"}


def test_the_consent_record_hashes_the_text_shown_exactly() -> None:
    form = parse_form(DESIGN_EXAMPLE)
    at = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    terms, marketing = form.consent_records({"terms": True}, "de", at)
    expected = hashlib.sha256(b"Ich akzeptiere die Nutzungsbedingungen.").hexdigest()
    assert terms.as_data() == {
        "id": "terms",
        "version": "2026-12-01",
        "accepted": True,
        "at": "2026-12-05T10:00:00.000Z",
        "language": "de",
        "text_sha256": expected,
        "marketing": False,
    }
    assert marketing.accepted is False
    # A language the text is not written in: the English text is shown, and recorded.
    (french,) = [r for r in form.consent_records({}, "fr", at) if r.id == "terms"]
    assert french.language == "en"
    assert french.text_sha256 == hashlib.sha256(b"I accept the terms of service.").hexdigest()


def test_an_empty_file_is_no_form() -> None:
    assert parse_form("").empty


BAD: list[tuple[str, str, str]] = [
    ("[[fields]]\nname = 'a'\ntype = \n", ":3:", "not valid TOML"),
    ('title = "x"\n', ":1:", "unknown key 'title'"),
    (
        '[[fields]]\nname = "email"\ntype = "text"\nlabel = { en = "E" }\n',
        ":2:",
        "taken by the form",
    ),
    (
        '[[fields]]\nname = "consents"\ntype = "text"\nlabel = { en = "E" }\n',
        ":2:",
        "taken by the form",
    ),
    ('[[fields]]\nname = "Company"\ntype = "text"\nlabel = { en = "E" }\n', ":2:", "lower-case"),
    ('[[fields]]\ntype = "text"\nlabel = { en = "E" }\n', ":1:", "name"),
    (
        '[[fields]]\nname = "a"\ntype = "number"\nlabel = { en = "A" }\n',
        ":3:",
        "type must be one of",
    ),
    ('[[fields]]\nname = "a"\ntype = "text"\n', ":1:", "label must be a table"),
    ('[[fields]]\nname = "a"\ntype = "text"\nlabel = "A"\n', ":4:", "label must be a table"),
    ('[[fields]]\nname = "a"\ntype = "text"\nlabel = { en = "" }\n', ":4:", "label"),
    (
        '[[fields]]\nname = "a"\ntype = "select"\nlabel = { en = "A" }\n',
        ":1:",
        "needs a list of options",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "select"\noptions = ["x", "x"]\nlabel = { en = "A" }\n',
        ":4:",
        "listed twice",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "date"\nmax_length = 3\nlabel = { en = "A" }\n',
        ":4:",
        "text fields only",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\noptions = ["x"]\nlabel = { en = "A" }\n',
        ":4:",
        "select fields only",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\nmin_length = 9\nmax_length = 3\n'
        'label = { en = "A" }\n',
        ":4:",
        "above max_length",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\nmax_length = -1\nlabel = { en = "A" }\n',
        ":4:",
        "whole number",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\npattern = "[a-"\nlabel = { en = "A" }\n',
        ":4:",
        "not a valid regular expression",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\nrequired = "yes"\nlabel = { en = "A" }\n',
        ":4:",
        "true or false",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\nlabel = { en = "A" }\nplaceholder = "x"\n',
        ":5:",
        "unknown key 'placeholder'",
    ),
    (
        '[[fields]]\nname = "a"\ntype = "text"\nlabel = { en = "A" }\n\n'
        '[[fields]]\nname = "a"\ntype = "date"\nlabel = { en = "A" }\n',
        ":6:",
        "declared twice",
    ),
    ('[[consents]]\nid = "terms"\nversion = 1\ntext = { en = "T" }\n', ":3:", 'version = "1"'),
    ('[[consents]]\nid = "terms"\nversion = "1"\n', ":1:", "text must be a table"),
    ('[[consents]]\nid = "terms"\nversion = "1"\ntext = { english = "T" }\n', ":4:", "text"),
    (
        '[[consents]]\nid = "terms"\nversion = "1"\nrequired = true\nmarketing = true\n'
        'text = { en = "T" }\n',
        ":5:",
        "free to refuse",
    ),
    ("fields = 3\n", ":1:", "must be tables"),
]


@pytest.mark.parametrize(("source", "line", "problem"), BAD)
def test_a_bad_definition_is_refused_naming_the_line(source: str, line: str, problem: str) -> None:
    with pytest.raises(FormFileError) as caught:
        parse_form(source, "form.toml")
    message = str(caught.value)
    assert message.startswith("form.toml" + line), message
    assert problem in message, message


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(FormFileError, match=r"nowhere\.toml: cannot read"):
        load_form(tmp_path / "nowhere.toml")


def test_serve_refuses_to_start_with_a_bad_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `signup serve` checks the form first of all (before the ports, the migrations).
    import typer

    from signup.entrypoints.cli import _check_form
    from signup.settings import Settings

    bad = tmp_path / "form.toml"
    bad.write_text('[[fields]]\nname = "password"\ntype = "text"\nlabel = { en = "P" }\n')
    with pytest.raises(typer.Exit) as caught:
        _check_form(Settings(form_file=bad))
    assert caught.value.exit_code == 2
    err = capsys.readouterr().err
    assert f"invalid SIGNUP_FORM_FILE: {bad}:2: the field name 'password'" in err
