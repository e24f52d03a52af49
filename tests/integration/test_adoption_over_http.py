"""What the Auth0 adapter hands over from a look-up, over HTTP against the stand-in: only
accounts that may be adopted for an intent (issue 18, item 4; the rules in
tests/unit/test_adoption.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from signup.adapters.auth0 import Auth0IdentityProvider
from signup.domain.model import Applicant
from signup.testing.auth0_standin import Auth0Standin, running_standin

OURS = "Username-Password-Authentication"
OTHER = "Other-Database"
PASSWORD = "violet tractor anthem"


@pytest.fixture
async def standin() -> AsyncIterator[Auth0Standin]:
    async with running_standin(connections=(OURS, OTHER)) as s:
        yield s


def client(standin: Auth0Standin, connection: str) -> Auth0IdentityProvider:
    return Auth0IdentityProvider(
        domain=standin.domain,
        client_id=standin.client_id,
        client_secret=SecretStr(standin.client_secret),
        base_url=standin.url,
        connection=connection,
    )


async def test_a_look_up_hands_over_only_adoptable_accounts(standin: Auth0Standin) -> None:
    ours, other = client(standin, OURS), client(standin, OTHER)
    try:
        # The same address, the same intent, on another database connection.
        elsewhere = await other.create_user(
            Applicant("ada@example.com", intent_id="intent-1"), PASSWORD
        )
        assert await ours.find_by_email("ada@example.com") == []
        assert [a.user_id for a in await other.find_by_email("ada@example.com")] == [
            elsewhere.user_id
        ]

        mine = await ours.create_user(Applicant("ada@example.com", intent_id="intent-1"), PASSWORD)
        [found] = await ours.find_by_email("ada@example.com")
        assert (found.user_id, found.intent_id) == (mine.user_id, "intent-1")
        assert found.created_at == mine.created_at

        # Auth0 answering a time we cannot read: not adoptable, never "now".
        standin.state.users[mine.user_id]["created_at"] = "Thursday"
        assert await ours.find_by_email("ada@example.com") == []
    finally:
        await ours.close()
        await other.close()
