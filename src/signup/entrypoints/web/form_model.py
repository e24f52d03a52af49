"""The request model of the site's form: one definition, three uses.

`FormRules` turns the `FormDefinition` into the pydantic model that validates
`POST /user/signup` (the built-in fields plus `"fields"` and `"consents"`), and the very
same model gives the JSON Schema of `/openapi.json` and of `GET /signup/schema.json`: what
the documents promise is what the server checks.

Strict types throughout: `"true"` is not a boolean and `1` not a text, as the schema says.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from babel import Locale
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    create_model,
    model_validator,
)

from signup.domain.form import Consent, FormDefinition, FormField, in_language
from signup.domain.model import Applicant
from signup.entrypoints.web.schemas import SignUpRequest, refused

# Babel's territories that are no country a person lives in.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"})
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@functools.cache
def country_codes() -> tuple[str, ...]:
    """ISO 3166-1 alpha-2 codes, as Babel (CLDR) knows them."""
    territories = Locale("en").territories
    return tuple(
        sorted(
            code
            for code in map(str, territories)
            if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
        )
    )


def country_names(language: str) -> dict[str, str]:
    """Code -> the country's name in `language` (CLDR), for the page's list."""
    try:
        names = Locale.parse(language.replace("-", "_")).territories
    except (ValueError, LookupError):
        names = Locale("en").territories
    return {code: str(names.get(code, code)) for code in country_codes()}


def _a_date(value: str) -> str:
    if _DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise refused("field.not_a_date", "Enter a date as YYYY-MM-DD.")


def anchored(pattern: str) -> str:
    """A declared pattern matches the whole value (JSON Schema's patterns search)."""
    return f"^(?:{pattern})$"


def _value_type(item: FormField) -> tuple[Any, Any]:
    """The field's annotation and its default (`...`: required)."""
    extra: dict[str, Any] = {"title": item.label.get("en") or next(iter(item.label.values()))}
    if item.help:
        extra["description"] = item.help.get("en") or next(iter(item.help.values()))
    default: Any = ... if item.required else None
    annotation: Any
    if item.type == "text":
        annotation = Annotated[
            str,
            Field(
                min_length=item.min_length or (1 if item.required else None),
                max_length=item.max_length,
                pattern=anchored(item.pattern) if item.pattern else None,
                **extra,
            ),
        ]
    elif item.type == "checkbox":
        # A required checkbox is one that must be ticked.
        annotation = Annotated[Literal[True] if item.required else StrictBool, Field(**extra)]
    elif item.type == "select":
        annotation = Annotated[Literal[item.option_values()], Field(**extra)]
    elif item.type == "country":
        annotation = Annotated[Literal[country_codes()], Field(**extra)]
    else:  # date
        annotation = Annotated[
            str, AfterValidator(_a_date), Field(json_schema_extra={"format": "date"}, **extra)
        ]
    if not item.required:
        annotation = annotation | None
    return annotation, default


def _consent_type(consent: Consent) -> tuple[Any, Any]:
    title = consent.text.get("en") or next(iter(consent.text.values()))
    if consent.required:
        return Annotated[Literal[True], Field(title=title)], ...
    return Annotated[StrictBool, Field(title=title)], False


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class _WithForm(SignUpRequest):
    @model_validator(mode="before")
    @classmethod
    def _each_required_entry_named(cls, data: Any) -> Any:
        # No "fields" or "consents" at all: each required one is named, not the object.
        if isinstance(data, dict) and ("fields" not in data or "consents" not in data):
            data = {"fields": {}, "consents": {}, **data}
        return data


class FormRules:
    """The site's form as the API validates and documents it."""

    def __init__(self, form: FormDefinition) -> None:
        self.form = form
        self.model: type[SignUpRequest] = SignUpRequest
        if form.empty:
            return
        parts: dict[str, Any] = {}
        if form.fields:
            fields_model = create_model(  # type: ignore[call-overload]
                "FormFields", __base__=_Part, **{f.name: _value_type(f) for f in form.fields}
            )
            required = any(f.required for f in form.fields)
            parts["fields"] = (fields_model, ... if required else Field(default=None))
        if form.consents:
            consents_model = create_model(  # type: ignore[call-overload]
                "FormConsents", __base__=_Part, **{c.id: _consent_type(c) for c in form.consents}
            )
            required = any(c.required for c in form.consents)
            parts["consents"] = (consents_model, ... if required else Field(default=None))
        self.model = create_model("SignUpForm", __base__=_WithForm, **parts)

    def applicant(self, request: SignUpRequest, language: str, at: datetime) -> Applicant:
        """The person asking, with the declared fields and the record of every consent
        shown (in `language`, or the text's own fallback)."""
        applicant = request.applicant()
        if self.form.empty:
            return applicant
        values: Mapping[str, Any] = {}
        answers: Mapping[str, Any] = {}
        fields_part = getattr(request, "fields", None)
        consents_part = getattr(request, "consents", None)
        if isinstance(fields_part, BaseModel):
            values = fields_part.model_dump(exclude_none=True)
        if isinstance(consents_part, BaseModel):
            answers = consents_part.model_dump()
        return Applicant(
            applicant.email,
            applicant.given_name,
            applicant.family_name,
            fields=tuple((name, values[name]) for name in self._names() if name in values),
            consents=self.form.consent_records(answers, language, at),
        )

    def _names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.form.fields)

    def request_schema(self) -> dict[str, Any]:
        """The request body's JSON Schema, self-contained (no `$ref`), as OpenAPI embeds it."""
        schema = self.model.model_json_schema()
        inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
        if self.form.empty:
            return inlined
        # The built-in fields' examples alone make a body the form refuses (its required
        # entries missing): one whole example instead, when the form allows one.
        for entry in inlined["properties"].values():
            entry.pop("examples", None)
        example = self._example()
        if example is not None:
            inlined["examples"] = [example]
        return inlined

    def _example(self) -> dict[str, Any] | None:
        """A body this form accepts, or None when a required field has a pattern (no value
        can be made up for it)."""
        values: dict[str, Any] = {}
        for item in self.form.fields:
            if not item.required:
                continue
            if item.type == "text":
                if item.pattern:
                    return None
                values[item.name] = "x" * max(item.min_length or 1, 1)
            elif item.type == "checkbox":
                values[item.name] = True
            elif item.type == "select":
                values[item.name] = item.options[0].value
            elif item.type == "country":
                values[item.name] = "DE"
            else:
                values[item.name] = "2000-01-01"
        body: dict[str, Any] = {
            "email": "ada@example.com",
            "password": "correct horse battery staple",
            "given_name": "Ada",
            "family_name": "Lovelace",
        }
        if self.form.fields:
            body["fields"] = values
        if self.form.consents:
            body["consents"] = {c.id: True for c in self.form.consents if c.required}
        return body

    def form_schema(self, site_name: str) -> dict[str, Any]:
        """`GET /signup/schema.json`: the request's schema with every label, help and
        consent text in each language, for sites that build their own page."""
        schema = self.request_schema()
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "urn:signup:form",
            **schema,
            "title": f"Sign up at {site_name}",
        }
        properties = schema["properties"]
        for item in self.form.fields:
            entry = properties["fields"]["properties"][item.name]
            entry["x-type"] = item.type
            entry["x-label"] = dict(item.label)
            if item.help:
                entry["x-help"] = dict(item.help)
            if item.options:
                entry["x-options"] = [
                    {"value": o.value, "label": dict(o.label) or {"en": o.value}}
                    for o in item.options
                ]
        for consent in self.form.consents:
            entry = properties["consents"]["properties"][consent.id]
            entry["x-version"] = consent.version
            entry["x-text"] = dict(consent.text)
            entry["x-marketing"] = consent.marketing
        return schema

    def labels(self, language: str) -> list[dict[str, Any]]:
        """The declared fields as the page shows them in `language`."""
        shown = []
        for item in self.form.fields:
            label, _ = in_language(item.label, language)
            help_text = in_language(item.help, language)[0] if item.help else None
            options: list[tuple[str, str]] = []
            if item.type == "select":
                options = [
                    (o.value, in_language(o.label, language)[0] if o.label else o.value)
                    for o in item.options
                ]
            elif item.type == "country":
                options = sorted(country_names(language).items(), key=lambda kv: kv[1])
            shown.append(
                {
                    "name": item.name,
                    "type": item.type,
                    "label": label,
                    "help": help_text,
                    "required": item.required,
                    "min_length": item.min_length,
                    "max_length": item.max_length,
                    "pattern": anchored(item.pattern) if item.pattern else None,
                    "options": options,
                }
            )
        return shown

    def consent_texts(self, language: str) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "version": c.version,
                "text": in_language(c.text, language)[0],
                "required": c.required,
            }
            for c in self.form.consents
        ]


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = dict(defs[ref.removeprefix("#/$defs/")])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **rest}, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
