"""The site's form: the extra fields it declares and the consents it asks for.

Built once at start-up from the site's definition (`SIGNUP_FORM_FILE`, read by
`signup.adapters.form_file`), then read by everything that shows or checks the form: the
page, the request's validation, the JSON Schema, the consent record. A definition that
got this far is whole: the reader refuses a file with any mistake in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

FieldType = Literal["text", "checkbox", "select", "date", "country"]
FIELD_TYPES: Final = ("text", "checkbox", "select", "date", "country")
# The request's own keys, and the profile's: a declared field may not take these names.
BUILT_IN_FIELDS: Final = frozenset(
    {
        "email",
        "password",
        "given_name",
        "family_name",
        "name",
        "fields",
        "consents",
        "challenge",
        "user_id",
        "language",
        "lang",
    }
)
DEFAULT_LANGUAGE: Final = "en"


def in_language(texts: Mapping[str, str], language: str) -> tuple[str, str]:
    """The text for `language`, else English, else the first given; with its language."""
    for candidate in (language, DEFAULT_LANGUAGE):
        if candidate in texts:
            return texts[candidate], candidate
    first = next(iter(texts))
    return texts[first], first


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: Mapping[str, str]  # empty: the value is its own label


@dataclass(frozen=True, slots=True)
class FormField:
    """One declared field. Its value is carried under `fields.<name>`."""

    name: str
    type: FieldType
    label: Mapping[str, str]
    help: Mapping[str, str] = field(default_factory=dict)
    required: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None  # must match the whole value (Python `re`)
    options: tuple[Option, ...] = ()
    line: int | None = None  # where the file declares it, for messages

    def option_values(self) -> tuple[str, ...]:
        return tuple(option.value for option in self.options)


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent asked for. `marketing`: the CRM learns whether it was given."""

    id: str
    version: str
    text: Mapping[str, str]
    required: bool = False
    marketing: bool = False
    line: int | None = None

    def text_sha256(self, language: str) -> str:
        """SHA-256 (hex) of the text shown in `language`, UTF-8, exactly as in the file."""
        text, _ = in_language(self.text, language)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """What a person was shown and answered: carried with the account and in `user.new`."""

    id: str
    version: str
    accepted: bool
    at: datetime
    language: str
    text_sha256: str
    marketing: bool = False

    def as_data(self) -> dict[str, object]:
        at = self.at.astimezone(UTC) if self.at.tzinfo else self.at.replace(tzinfo=UTC)
        return {
            "id": self.id,
            "version": self.version,
            "accepted": self.accepted,
            "at": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "language": self.language,
            "text_sha256": self.text_sha256,
            "marketing": self.marketing,
        }


@dataclass(frozen=True, slots=True)
class FormDefinition:
    fields: tuple[FormField, ...] = ()
    consents: tuple[Consent, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.fields and not self.consents

    def languages(self) -> tuple[str, ...]:
        """Every language some label or text is written in, English first."""
        found: dict[str, None] = {DEFAULT_LANGUAGE: None}
        for item in self.fields:
            found.update(dict.fromkeys(item.label))
        for consent in self.consents:
            found.update(dict.fromkeys(consent.text))
        return tuple(found)

    def consent_records(
        self, answers: Mapping[str, bool], language: str, at: datetime
    ) -> tuple[ConsentRecord, ...]:
        """The record of every consent shown, in `language` (or the text's fallback)."""
        records = []
        for consent in self.consents:
            _, shown = in_language(consent.text, language)
            records.append(
                ConsentRecord(
                    consent.id,
                    consent.version,
                    bool(answers.get(consent.id, False)),
                    at,
                    shown,
                    consent.text_sha256(shown),
                    consent.marketing,
                )
            )
        return tuple(records)

    def consent_hashes(self) -> dict[tuple[str, str, str], str]:
        """(id, version, language) -> the text's SHA-256: what start-up compares."""
        return {
            (consent.id, consent.version, language): consent.text_sha256(language)
            for consent in self.consents
            for language in consent.text
        }


NO_FORM: Final = FormDefinition()
