"""The sign-up request as the HTTP API accepts it: validation and normalisation."""

from __future__ import annotations

import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from signup.domain.email_address import normalise_email
from signup.domain.model import Applicant
from signup.domain.names import name_problem
from signup.domain.passwords import MAX_LENGTH, password_problem

MAX_NAME = 100


def _clean_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        return None
    if len(value) > MAX_NAME:
        raise ValueError(f"Use at most {MAX_NAME} characters.")
    # The welcome e-mail repeats the name to an unverified address: no encoded-words,
    # links or addresses (the rule lives in the domain; the consumer applies it too).
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class SignUpRequest(BaseModel):
    """`POST /user/signup` body. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, hide_input_in_errors=True)

    email: str = Field(max_length=1024, examples=["ada@example.com"])
    password: str = Field(max_length=4 * MAX_LENGTH, examples=["correct horse battery staple"])
    given_name: str | None = Field(default=None, max_length=4 * MAX_NAME, examples=["Ada"])
    family_name: str | None = Field(default=None, max_length=4 * MAX_NAME, examples=["Lovelace"])

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("given_name", "family_name")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return _clean_name(value)

    def applicant(self) -> Applicant:
        return Applicant(self.email, self.given_name, self.family_name)


class PasswordPolicy:
    def __init__(self, site_name: str) -> None:
        self.site_name = site_name

    def problem(self, request: SignUpRequest) -> str | None:
        return password_problem(request.password, request.email, self.site_name)


FIELD_MESSAGES = {
    "missing": "This field is required.",
    "string_type": "Must be text.",
    "extra_forbidden": "Unknown field: remove it.",
    "string_too_long": "This is too long.",
}


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as `{"field", "message"}`, never echoing the input."""
    errors: list[dict[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc) if loc else "body"
        kind = error["type"]
        if kind == "value_error":
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        elif kind == "model_type" or kind == "dict_type":
            field, message = "body", "Send a JSON object with email and password."
        else:
            message = FIELD_MESSAGES.get(kind, error["msg"])
        errors.append({"field": field, "message": message})
    return errors


def validate_signup(data: Any, policy: PasswordPolicy) -> SignUpRequest | list[dict[str, str]]:
    try:
        request = SignUpRequest.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        # Tell about the password too, if it is present, so one round trip fixes all.
        if isinstance(data, dict) and isinstance(data.get("password"), str):
            email = data.get("email") if isinstance(data.get("email"), str) else None
            problem = password_problem(data["password"], email, policy.site_name)
            if problem and not any(e["field"] == "password" for e in errors):
                errors.append({"field": "password", "message": problem})
        return errors
    problem = policy.problem(request)
    if problem:
        return [{"field": "password", "message": problem}]
    return request
