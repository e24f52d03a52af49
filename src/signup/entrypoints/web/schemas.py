"""The sign-up request as the HTTP API accepts it: validation and normalisation."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from signup.domain.email_address import MAX_EMAIL, EmailRefused, normalise_email
from signup.domain.model import Applicant
from signup.domain.names import name_refusal
from signup.domain.passwords import MAX_LENGTH, MIN_LENGTH, password_refusal

MAX_NAME = 100
NAME_RULE = (
    "At most 100 characters; no control or invisible characters, encoded words (=?, ?=), "
    "@, < or >, links, web or e-mail addresses (a full stop is followed by a space)."
)


def refused(code: str, message: str) -> PydanticCustomError:
    """A validation error that carries its stable code (as its type) and its message."""
    # The message goes in the context: a template would read any braces in it as fields.
    return PydanticCustomError(code, "{message}", {"message": message})


def _clean_name(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        return None
    if len(value) > MAX_NAME:
        raise refused(f"{field}.too_long", f"Use at most {MAX_NAME} characters.")
    # The welcome e-mail repeats the name to an unverified address: no encoded-words,
    # links or addresses (the rule lives in the domain; the consumer applies it too).
    refusal = name_refusal(value)
    if refusal is not None:
        kind, message = refusal
        raise refused(f"{field}.{kind}", message)
    return value


# The format names the rule no JSON Schema keyword states (signup.domain.names).
PersonName = Annotated[str, Field(max_length=MAX_NAME, json_schema_extra={"format": "person-name"})]


class SignUpRequest(BaseModel):
    """`POST /user/signup` body. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, hide_input_in_errors=True)

    # The limits the service applies, stated here so that /openapi.json and
    # /signup/schema.json tell them (the rules no JSON Schema keyword says are in the
    # descriptions and in the formats' names: docs/decisions, "schemas tell the truth").
    email: str = Field(
        max_length=MAX_EMAIL,
        examples=["ada@example.com"],
        json_schema_extra={"format": "email"},
        description="An address we can write to: ASCII before the @-sign, no look-alike "
        "letters in the domain; compared case-insensitively.",
    )
    password: str = Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        examples=["correct horse battery staple"],
        json_schema_extra={"format": "password"},
        description="8 to 128 characters; not one repeated character, the e-mail address, "
        "the site's name or a common password.",
    )
    given_name: PersonName | None = Field(default=None, examples=["Ada"], description=NAME_RULE)
    family_name: PersonName | None = Field(
        default=None, examples=["Lovelace"], description=NAME_RULE
    )
    # SIGNUP_CHALLENGE=pow: the base64 ALTCHA solution of a challenge from
    # GET /signup/challenge (ignored while the challenge is off).
    challenge: str | None = Field(
        default=None,
        max_length=4096,
        # Base64 only: also bounds the body a schema-valid request makes (16 KiB at most).
        pattern=r"^[A-Za-z0-9+/=_-]*$",
        description="The proof-of-work solution (base64 JSON) when the site asks for one.",
    )
    # The honeypot (docs/abuse.md): the page hides it from people and screen readers
    # alike, so only a bot fills it; a filled one is answered as a success, nothing made.
    website: str | None = Field(
        default=None, max_length=2048, description="Leave this out (or empty)."
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return normalise_email(value)
        except EmailRefused as exc:
            raise refused(exc.code, str(exc)) from None

    @field_validator("given_name", "family_name")
    @classmethod
    def _names(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _clean_name(str(info.field_name), value)

    def applicant(self) -> Applicant:
        return Applicant(self.email, self.given_name, self.family_name)


class PasswordPolicy:
    def __init__(self, site_name: str) -> None:
        self.site_name = site_name

    def refusal(self, password: str, email: str | None) -> tuple[str, str] | None:
        return password_refusal(password, email, self.site_name)


FIELD_MESSAGES = {
    "missing": "This field is required.",
    "string_type": "Must be text.",
    "extra_forbidden": "Unknown field: remove it.",
    "string_too_long": "This is too long.",
}
# Pydantic's error types as the last part of a field's code (`email.required`).
CODE_SUFFIXES = {
    "missing": "required",
    "string_type": "not_text",
    "string_too_long": "too_long",
    "string_too_short": "too_short",
}
BODY_MALFORMED = {
    "field": "body",
    "message": "Send a JSON object with email and password.",
    "code": "body.malformed",
}


def field_error(field: str, message: str, code: str) -> dict[str, str]:
    return {"field": field, "message": message, "code": code}


# An error inside the site's declared `fields` or `consents`: (code, message) by type.
SECTION_ERRORS: dict[str, dict[str, tuple[str, str]]] = {
    "fields": {
        "missing": ("field.required", "This field is required."),
        "literal_error": ("field.not_an_option", "Choose one of the options."),
        "string_too_short": ("field.too_short", "This is too short."),
        "string_too_long": ("field.too_long", "This is too long."),
        "string_pattern_mismatch": ("field.pattern_mismatch", "This is not in the expected form."),
        "string_type": ("field.not_text", "Must be text."),
        "bool_type": ("field.not_boolean", "Must be true or false."),
    },
    "consents": {
        "missing": ("consent.required", "Please accept this to continue."),
        "literal_error": ("consent.required", "Please accept this to continue."),
        "bool_type": ("consent.not_boolean", "Must be true or false."),
    },
}


def _section_error(
    section: str, field: str, kind: str, loc: list[str], ctx: dict[str, Any]
) -> dict[str, str]:
    if kind == "literal_error" and section == "fields" and str(ctx.get("expected")) == "True":
        return field_error(field, "Tick this box to continue.", "field.required")
    if kind == "extra_forbidden":
        return field_error(field, FIELD_MESSAGES[kind], "field.unknown")
    if len(loc) == 1:  # the object itself
        kind_code = "required" if kind == "missing" else "not_an_object"
        return field_error(field, "Send an object of names and values.", f"{section}.{kind_code}")
    code, message = SECTION_ERRORS[section].get(kind, (f"{section[:-1]}.invalid", "Not valid."))
    return field_error(field, message, code)


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as `{"field", "message", "code"}`, never echoing the input."""
    errors: list[dict[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc) if loc else "body"
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if loc and loc[0] in SECTION_ERRORS and "." not in kind:
            errors.append(_section_error(loc[0], field, kind, loc, ctx))
        elif "." in kind:  # ours (`refused`): the type is the code
            errors.append(field_error(field, str(ctx.get("message", error["msg"])), kind))
        elif kind == "model_type" or kind == "dict_type":
            errors.append(dict(BODY_MALFORMED))
        elif kind == "extra_forbidden":
            errors.append(field_error(field, FIELD_MESSAGES[kind], "field.unknown"))
        else:
            message = FIELD_MESSAGES.get(kind, error["msg"])
            if kind == "value_error" and "error" in ctx:
                message = str(ctx["error"])
            elif kind == "string_too_short" and "min_length" in ctx:
                message = f"Use at least {ctx['min_length']} characters."
            elif kind == "string_too_long" and "max_length" in ctx:
                message = f"Use at most {ctx['max_length']} characters."
            errors.append(
                field_error(field, message, f"{field}.{CODE_SUFFIXES.get(kind, 'invalid')}")
            )
    return errors


def validate_signup(
    data: Any, policy: PasswordPolicy, model: type[SignUpRequest] = SignUpRequest
) -> SignUpRequest | list[dict[str, str]]:
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        # Tell about the password too, if it is present, so one round trip fixes all.
        if isinstance(data, dict) and isinstance(data.get("password"), str):
            email = data.get("email") if isinstance(data.get("email"), str) else None
            refusal = policy.refusal(data["password"], email)
            if refusal and not any(e["field"] == "password" for e in errors):
                errors.append(field_error("password", refusal[1], refusal[0]))
        return errors
    refusal = policy.refusal(request.password, request.email)
    if refusal:
        return [field_error("password", refusal[1], refusal[0])]
    return request
