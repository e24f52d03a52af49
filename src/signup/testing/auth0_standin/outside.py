"""Accounts made outside the form (a social login, the dashboard), and the user search by
`created_at` (`GET /api/v2/users?q=created_at:[A TO B]&search_engine=v3`) with its paging,
its 1,000-result cap and the index's delay, as docs/auth0.md describes them."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from .answers import ApiError
from .state import StandinState

# Social connections and the provider each names (identities[].provider).
SOCIAL = {"google-oauth2": "google-oauth2", "github": "github", "facebook": "facebook"}
RESULT_CAP = 1000
_QUERY = re.compile(r"^created_at:([\[{])(\S+) TO (\S+)([\]}])$")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def outside_user(
    state: StandinState,
    *,
    kind: str,
    email: str,
    connection: str,
    given_name: str | None = None,
    family_name: str | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """A user as Auth0 keeps one made by a social login (`kind` "social", `connection`
    e.g. google-oauth2) or by staff in the dashboard ("dashboard", a database connection)."""
    social = kind == "social"
    if social and connection not in SOCIAL:
        raise ValueError(f"not a social connection: {connection}")
    hex_id = secrets.token_hex(12) if not social else str(secrets.randbelow(10**20))
    provider = SOCIAL[connection] if social else "auth0"
    now = iso(created_at or datetime.now(UTC))
    name = " ".join(p for p in (given_name, family_name) if p) or email
    user: dict[str, Any] = {
        "user_id": f"{provider}|{hex_id}",
        "email": email.lower(),
        "email_verified": social,
        "name": name,
        "nickname": email.split("@", 1)[0],
        "given_name": given_name,
        "family_name": family_name,
        "picture": "https://example.invalid/p.png",
        "created_at": now,
        "updated_at": now,
        "identities": [
            {
                "connection": connection,
                "user_id": hex_id,
                "provider": provider,
                "isSocial": social,
            }
        ],
        "app_metadata": {},
        "user_metadata": {},
    }
    state.users[user["user_id"]] = user
    if not social:
        state.by_email[(connection, user["email"])] = user["user_id"]
    return user


def _bound(text: str, open_end: datetime) -> datetime:
    if text == "*":
        return open_end
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"Query validation error: bad date '{text}'.", "invalid_query"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def search(
    state: StandinState, query: dict[str, str], *, now: float
) -> dict[str, Any] | list[dict[str, Any]]:
    """The answer to a user search; users made less than the index delay ago are not in
    it yet (`state.indexed_at`)."""
    if query.get("search_engine") != "v3":
        raise ApiError(400, "Only search_engine=v3 is served here.", "invalid_query_string")
    match = _QUERY.match(query.get("q", "").strip())
    if match is None:
        raise ApiError(400, "Only q=created_at:[A TO B] is served here.", "invalid_query_string")
    low_incl, high_incl = match.group(1) == "[", match.group(4) == "]"
    low = _bound(match.group(2), datetime.min.replace(tzinfo=UTC))
    high = _bound(match.group(3), datetime.max.replace(tzinfo=UTC))
    try:
        page = int(query.get("page", "0"))
        per_page = int(query.get("per_page", "50"))
    except ValueError:
        raise ApiError(400, "page and per_page are numbers.", "invalid_query_string") from None
    if not 0 < per_page <= 100 or page < 0:
        raise ApiError(400, "per_page must be 1..100, page >= 0.", "invalid_query_string")
    if (page + 1) * per_page > RESULT_CAP:
        raise ApiError(
            400,
            f"You can only page through the first {RESULT_CAP} records.",
            "invalid_paging",
        )

    def inside(user: dict[str, Any]) -> bool:
        made = datetime.fromisoformat(str(user["created_at"]).replace("Z", "+00:00"))
        return (low < made or (low_incl and low == made)) and (
            made < high or (high_incl and made == high)
        )

    found = [
        u
        for u in state.users.values()
        if state.indexed_at.get(u["user_id"], 0.0) <= now and inside(u)
    ]
    descending = query.get("sort", "created_at:1") == "created_at:-1"
    found.sort(key=lambda u: (str(u["created_at"]), u["user_id"]), reverse=descending)
    chunk = found[page * per_page : (page + 1) * per_page]
    if query.get("include_totals") == "true":
        return {
            "start": page * per_page,
            "limit": per_page,
            "length": len(chunk),
            "total": len(found),
            "users": chunk,
        }
    return chunk
