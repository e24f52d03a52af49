"""Imperative requests to the service layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from signup.domain.model import Applicant


@dataclass(frozen=True, slots=True)
class RegisterUser:
    applicant: Applicant
    password: str = field(repr=False)
    idempotency_key: str | None = None
