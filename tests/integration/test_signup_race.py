"""Security issue 16, items 2 and 3: the sign-up race, performed against the running service.

The service runs over real HTTP with its real database (SQLite and PostgreSQL); in Auth0
mode it talks to the Auth0 stand-in over HTTP. The stand-in's latency keeps the first
creation in flight while the others arrive, which is what let a 409 be taken for the
answer to someone else's request: the victim was told "created" for an account that held
the attacker's password.

What must hold, in both modes alike: one address, one account, one event, exactly one
201, and that 201 went to the request whose password the account holds. With hidden
accounts, the answers for a new and for a registered address cannot be told apart.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import select

from signup.adapters.database import create_engine
from signup.adapters.sql import SqlUnitOfWork
from signup.adapters.tables import users
from signup.domain.events import UserRegistered
from signup.service_layer.unit_of_work import Transaction
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, running_standin
from signup.testing.server import serving

pytestmark = pytest.mark.timeout(120)

PARALLEL = 50
PAIRS = 10
# Long enough for every creation of a burst to be in flight at once; no assertion is
# timed by it.
STANDIN_LATENCY = 0.05
USER_ID = {"auth0": re.compile(r"auth0\|[0-9a-f]{24}"), "local": re.compile(r"local\|[0-9a-f]{24}")}


def password(n: int) -> str:
    return f"Race-{secrets.token_hex(6)}-Lantern{n}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    content_type: str
    password: str


@dataclass
class Site:
    """The running service and what it wrote: accounts (provider), events (outbox)."""

    mode: str
    url: str
    http: aiohttp.ClientSession
    uow: SqlUnitOfWork
    standin: Auth0Standin | None

    async def post(self, email: str, secret: str) -> Answer:
        body = {"email": email, "password": secret, "given_name": "Race"}
        async with self.http.post(f"{self.url}/user/signup", json=body) as response:
            data = orjson.loads(await response.read())
            return Answer(response.status, data, response.headers["Content-Type"], secret)

    async def account_ids(self, email: str) -> list[str]:
        if self.standin is not None:
            return [u["user_id"] for u in self.standin.state.users_by_email(email)]

        async def look(tx: Transaction) -> list[str]:
            account = await tx.users.by_email(email)
            return [account.user_id] if account else []

        return await self.uow.read(look)

    async def holds(self, user_id: str, secret: str) -> bool:
        """Does the account `user_id` hold this password?"""
        if self.standin is not None:
            return self.standin.password_matches(user_id, secret)

        query = select(users.c.password_hash).where(users.c.user_id == user_id)
        async with self.uow.reader.connect() as conn:
            digest = (await conn.execute(query)).scalar_one()
        try:
            return PasswordHasher().verify(digest, secret)
        except VerifyMismatchError:
            return False

    async def events_in(self, tx: Transaction) -> list[UserRegistered]:
        entries = await tx.outbox.unpublished(10_000)
        # `user.new` only: a registered address's owner notice (`user.signup_attempted`,
        # docs/abuse.md) is another event.
        return [UserRegistered.from_json(e.payload) for e in entries if e.routing_key == "user.new"]

    async def events_for(self, user_ids: set[str]) -> list[UserRegistered]:
        every = await self.uow.read(self.events_in)
        return [e for e in every if e.data.user_id in user_ids]


@pytest.fixture
def start_site(database_url: str, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    @asynccontextmanager
    async def start(mode: str, *, hide: bool = False) -> AsyncIterator[Site]:
        async with AsyncExitStack() as stack:
            overrides: dict[str, Any] = {
                "database_url": database_url,
                "hide_existing_accounts": hide,
                "identity_provider": mode,
            }
            standin: Auth0Standin | None = None
            if mode == "auth0":
                standin = await stack.enter_async_context(running_standin(latency=STANDIN_LATENCY))
                overrides.update(
                    auth0_domain=standin.domain,
                    auth0_client_id=standin.client_id,
                    auth0_client_secret=standin.client_secret,
                    auth0_base_url=standin.url,
                )
            # The relay stays off: every event the sign-ups wrote is still in the outbox.
            url = await stack.enter_async_context(
                serving(make_settings(**overrides), run_relay=False)
            )
            http = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            )
            uow = SqlUnitOfWork(
                writer=create_engine(database_url, writer=True),
                reader=create_engine(database_url),
                clock=lambda: datetime.now(UTC),
            )
            try:
                yield Site(mode, url, http, uow, standin)
            finally:
                await uow.close()
                await uow.writer.dispose()
                await uow.reader.dispose()

    return start


async def assert_one_account_for_the_one_201(
    site: Site, email: str, answers: list[Answer]
) -> Answer:
    statuses = Counter(a.status for a in answers)
    assert statuses == {201: 1, 409: len(answers) - 1}, statuses
    [won] = [a for a in answers if a.status == 201]
    for lost in answers:
        if lost.status == 409:
            assert lost.content_type.startswith("application/problem+json")
            assert lost.body["type"] == "urn:signup:problem:email-already-registered", lost.body
    [account] = await site.account_ids(email)
    assert won.body["user_id"] == account
    # The one request told "created" is the one whose password the account holds.
    holders = [a for a in answers if await site.holds(account, a.password)]
    assert holders == [won], f"the account holds the password of {len(holders)} requests"
    [event] = await site.events_for({account})
    assert event.data.user_id == account
    return won


@pytest.mark.parametrize("mode", ["auth0", "local"])
async def test_fifty_simultaneous_sign_ups_of_one_address_make_one_201(
    start_site: Callable[..., Any], mode: str
) -> None:
    async with start_site(mode) as site:
        email = "target@example.com"
        answers = await asyncio.gather(*(site.post(email, password(n)) for n in range(PARALLEL)))
        won = await assert_one_account_for_the_one_201(site, email, list(answers))
        assert won.body["email"] == email


@pytest.mark.parametrize("mode", ["auth0", "local"])
async def test_an_attacker_one_millisecond_ahead_never_gets_the_victim_a_201(
    start_site: Callable[..., Any], mode: str
) -> None:
    async with start_site(mode) as site:

        async def victim(email: str) -> Answer:
            await asyncio.sleep(0.001)  # the attack's own timing, not a synchronisation
            return await site.post(email, password(1))

        for trial in range(PAIRS):
            email = f"victim{trial}@example.com"
            pair = await asyncio.gather(site.post(email, password(0)), victim(email))
            await assert_one_account_for_the_one_201(site, email, list(pair))


@pytest.mark.parametrize("mode", ["auth0", "local"])
async def test_hidden_accounts_answer_new_and_registered_addresses_alike(
    start_site: Callable[..., Any], mode: str
) -> None:
    typed = "Mixed.Case@Example.COM"  # the provider lower-cases it; the echo must not tell
    async with start_site(mode, hide=True) as site:
        new = await asyncio.gather(site.post(typed, password(0)), site.post(typed, password(1)))
        registered = await asyncio.gather(
            site.post(typed, password(2)), site.post(typed, password(3))
        )
        answers = [*new, *registered]
        for answer in answers:
            assert answer.status == 201, answer.body
            assert answer.content_type == "application/json", answer.content_type
            assert set(answer.body) == {"user_id", "email"}
            assert USER_ID[mode].fullmatch(answer.body["user_id"]), answer.body
        echoes = {a.body["email"] for a in answers}
        assert len(echoes) == 1, f"the echo tells new from registered: {echoes}"
        ids = [a.body["user_id"] for a in answers]
        assert len(set(ids)) == len(ids), f"two answers carry the same user id: {ids}"

        [echo] = echoes
        [account] = await site.account_ids(echo)
        [owner] = [a for a in answers if a.body["user_id"] == account]
        assert owner in new
        holders = [a for a in answers if await site.holds(account, a.password)]
        assert holders == [owner]
        assert len(await site.events_for(set(ids))) == 1
