"""Events the service publishes: frozen, past-tense, versioned.

`UserRegistered` travels as a CloudEvents 1.0 structured-mode JSON document of type
`user.new`; the same models parse it on the consumer side, so publisher and consumers
cannot drift apart. `UserVerified` (`user.verified`) follows the same envelope rules:
a local account's address was confirmed through the link of its welcome e-mail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_serializer

USER_NEW = "user.new"
USER_VERIFIED = "user.verified"
# Which path announced an account first (`data.origin`).
ORIGIN_FORM = "form"
ORIGIN_AUTH0_EVENT = "auth0-event"
ORIGIN_SWEEP = "sweep"
ORIGINS = (ORIGIN_FORM, ORIGIN_AUTH0_EVENT, ORIGIN_SWEEP)
_NO_EXTENSION: set[str] = {"auth0eventid"}
USER_SIGNUP_ATTEMPTED = "user.signup_attempted"
DataT = TypeVar("DataT", bound=BaseModel)


def iso_millis(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as Auth0 and the contract write times."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _absent(value: object) -> bool:
    return value is None


class ConsentGiven(BaseModel):
    """The record of one consent shown at sign-up (`data.consents[]`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    version: str
    accepted: bool
    at: str  # ISO 8601, milliseconds, `Z`: as recorded
    language: str
    text_sha256: str
    marketing: bool = False


class UserRegisteredData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: str = Field(min_length=1)
    email: str = Field(min_length=3)
    email_verified: bool
    given_name: str | None
    family_name: str | None
    name: str
    created_at: datetime
    identity_provider: str
    # Additive (issue 21): only when the site declares a form; absent, not null, otherwise.
    fields: dict[str, str | bool] | None = Field(default=None, exclude_if=_absent)
    consents: list[ConsentGiven] | None = Field(default=None, exclude_if=_absent)
    # Additive (issue 19): which Auth0 connection made the account (None for the local
    # store), whether that is a social one, and which path announced it first.
    connection: str | None = None
    is_social: bool = False
    origin: str | None = None
    # The language the person signed up in (`en`, `de`, ...; a BCP 47 tag), for what is
    # said to them later (the welcome e-mail). None: not known (e.g. an event written
    # before this field, or an account settled by reconciliation).
    language: str | None = None

    @field_serializer("created_at")
    def _created_at(self, value: datetime) -> str:
        return iso_millis(value)


class _CloudEvent(BaseModel, Generic[DataT]):
    """The CloudEvents 1.0 structured-mode envelope every event shares. A subclass states
    its `type` (a Literal, so a body of another type does not parse as it), `routing_key`,
    `schema_version` and data model; the fields keep this order on the wire."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    schema_version: ClassVar[int]
    routing_key: ClassVar[str]

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: DataT

    @field_serializer("time")
    def _time(self, value: datetime) -> str:
        return iso_millis(value)

    def to_json(self) -> bytes:
        # pydantic-core writes the JSON itself: no dict of the event on the way, the same
        # bytes as model_dump and orjson (docs/decisions/0012).
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, body: bytes | str) -> Self:
        return cls.model_validate_json(body)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class UserRegistered(_CloudEvent[UserRegisteredData]):
    """A person's account was created by the identity provider (CloudEvent `user.new`, v1)."""

    schema_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = USER_NEW

    type: Literal["user.new"] = "user.new"
    # CloudEvents extension attribute: the id of the Auth0 event that told us of the
    # account (tracing only; the event's own `id` is ours). Left out when there is none.
    auth0eventid: str | None = None

    def to_json(self) -> bytes:
        if self.auth0eventid is None:
            return self.model_dump_json(exclude=_NO_EXTENSION).encode()
        return self.model_dump_json().encode()


class UserVerifiedData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: str = Field(min_length=1)
    email: str = Field(min_length=3)
    email_verified: Literal[True] = True
    verified_at: datetime
    identity_provider: str

    @field_serializer("verified_at")
    def _verified_at(self, value: datetime) -> str:
        return iso_millis(value)


class UserVerified(_CloudEvent[UserVerifiedData]):
    """A person opened the verification link of a local account (CloudEvent `user.verified`,
    v1): once per account."""

    schema_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = USER_VERIFIED

    type: Literal["user.verified"] = "user.verified"


class SignupAttemptedData(BaseModel):
    """Whose address it was, and when: nothing else of the attempt (not the names typed,
    not the client), so the e-mail it becomes can carry nothing the person who typed
    the form chose."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: str = Field(min_length=1)
    email: str = Field(min_length=3)
    attempted_at: datetime
    # The language the attempt was answered in (one of the site's, as negotiated for the
    # page), for the notice's words; None: the worker's default (English).
    language: str | None = None

    @field_serializer("attempted_at")
    def _attempted_at(self, value: datetime) -> str:
        return iso_millis(value)


class SignupAttempted(_CloudEvent[SignupAttemptedData]):
    """Someone tried to sign up with a registered address while existing accounts are
    hidden (CloudEvent `user.signup_attempted`, v1): the welcome-e-mail worker tells the
    address's owner. At most one an hour per address."""

    schema_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = USER_SIGNUP_ATTEMPTED

    type: Literal["user.signup_attempted"] = "user.signup_attempted"


# What the outbox carries: every event the service publishes.
OutboxEvent = UserRegistered | UserVerified | SignupAttempted
# What the workers take from their queues.
ConsumedEvent = UserRegistered | SignupAttempted


def parse_consumed(body: bytes | str) -> ConsumedEvent:
    """The event a worker's message carries, chosen by its CloudEvents `type` (`user.new`
    when it has none). Raises ValueError (pydantic's ValidationError is one) if malformed."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("type") == USER_SIGNUP_ATTEMPTED:
        return SignupAttempted.model_validate(data)
    return UserRegistered.model_validate(data)
