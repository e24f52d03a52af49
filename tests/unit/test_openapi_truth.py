"""/openapi.json states the limits the service applies, from the models it validates with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signup.entrypoints.web.app import create_app
from signup.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "form.example.toml"


def body_schema(**settings: Any) -> dict[str, Any]:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", **settings))
    operation = app.openapi()["paths"]["/user/signup"]["post"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def test_the_built_in_fields_state_the_real_limits() -> None:
    schema = body_schema()
    email, password = schema["properties"]["email"], schema["properties"]["password"]
    assert (email["maxLength"], email["format"]) == (254, "email")
    assert (password["minLength"], password["maxLength"]) == (8, 128)
    for name in ("given_name", "family_name"):
        text = schema["properties"][name]["anyOf"][0]
        assert (text["maxLength"], text["format"]) == (100, "person-name")
    assert schema["required"] == ["email", "password"]
    assert schema["additionalProperties"] is False
    assert "fields" not in schema["properties"]  # no form: refused as unknown


def test_with_a_form_the_document_shows_it_and_a_whole_example() -> None:
    schema = body_schema(form_file=EXAMPLE)
    assert schema["required"] == ["email", "password", "fields", "consents"]
    assert schema["properties"]["fields"]["properties"]["role"]["enum"] == [
        "developer",
        "manager",
        "other",
    ]
    (example,) = schema["examples"]
    assert example["fields"] == {"role": "developer"} and example["consents"] == {"terms": True}
    assert "$defs" not in str(schema)  # self-contained: no reference out of the operation
