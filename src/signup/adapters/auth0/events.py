"""Auth0's CloudEvents (Event Streams' webhook, or the Actions in docs/) read for
`POST /hooks/auth0`: which event, of which type, about which account.

Shape (docs/auth0.md, "Events from Auth0"): `{"id", "source", "specversion", "type",
"time", "data": {"object": <the user profile>}}`. Some of Auth0's pages write the type
`com.auth0.user.created`: both are read as a creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from signup.adapters.auth0.accounts import external_account
from signup.domain.model import CreatedAccount

USER_CREATED: Final = frozenset({"user.created", "com.auth0.user.created"})
_MAX_ID: Final = 255


class MalformedDelivery(ValueError):
    """The body is not an Auth0 event we can read: answered 400, nothing written."""


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    type: str
    # The account of a `user.created` event; None for other types (acknowledged,
    # ignored) and for an account that cannot be announced (no e-mail address).
    account: CreatedAccount | None

    @property
    def creation(self) -> bool:
        return self.type in USER_CREATED


def read_delivery(body: bytes) -> Delivery:
    """The event in `body`; raises `MalformedDelivery` saying what is wrong."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedDelivery("The body is not valid JSON.") from None
    if not isinstance(event, dict):
        raise MalformedDelivery("The body must be one CloudEvent (a JSON object).")
    event_id, type_ = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= _MAX_ID:
        raise MalformedDelivery("The event has no readable id.")
    if not isinstance(type_, str) or not type_:
        raise MalformedDelivery("The event has no type.")
    if type_ not in USER_CREATED:
        return Delivery(event_id, type_, None)
    data = event.get("data")
    profile = data.get("object") if isinstance(data, dict) else None
    if not isinstance(profile, dict):
        raise MalformedDelivery("A user.created event carries the user under data.object.")
    user_id = profile.get("user_id")
    if not isinstance(user_id, str) or not user_id or len(user_id) > _MAX_ID:
        raise MalformedDelivery("The user under data.object has no readable user_id.")
    return Delivery(event_id, type_, external_account(profile))


__all__ = ["USER_CREATED", "Delivery", "MalformedDelivery", "read_delivery"]
