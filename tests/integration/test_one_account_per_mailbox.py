"""One account per mailbox, in both modes: the real app over HTTP, the real database
(SQLite and PostgreSQL), local mode and Auth0 mode (the stand-in over HTTP).

Case variants of one address are one account, as Auth0 has them; look-alike addresses
(mixed scripts) and addresses we could not write to are refused and leave no trace.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError

from signup.adapters import tables as t
from signup.adapters.auth0 import Auth0IdentityProvider
from signup.adapters.database import MIGRATIONS, create_engine
from signup.adapters.local_users import LocalIdentityProvider
from signup.adapters.sql import SqlUnitOfWork
from signup.domain.errors import EmailAlreadyRegistered
from signup.domain.model import Applicant, CreatedAccount
from signup.service_layer.registration import RegistrationService
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, running_standin
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"
MODES = ["local", "auth0"]

# One mailbox typed four ways, and another mailbox twice: one 201 for each mailbox.
VARIANTS = [
    ("adan1@example.com", 201),
    ("Adan1@Example.COM", 409),
    ("ADAn1@EXAMPLE.COM", 409),
    ("  aDAN1@example.com ", 409),
    ("adan2@example.com", 201),
    ("ADAN2@Example.com", 409),
]

REFUSED = [
    ("\u0430dan1@example.com", "mixes letters of different alphabets"),  # Cyrillic а
    ("adan1@ex\u0430mple.com", "mixes letters of different alphabets"),  # Cyrillic а
    ("adan1@xn--exmple-4nf.com", "mixes letters of different alphabets"),  # the same
    ("adan1@\u0455\u0441\u043e\u043e\u0440.com", "look like Latin ones"),  # ѕсоор.com
    ("josén1@example.com", "can't deliver"),
    ("jose\u0301n1@example.com", "can't deliver"),  # the same, decomposed
]


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def standin() -> AsyncIterator[Auth0Standin]:
    async with running_standin() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def mode_settings(
    make_settings: Callable[..., Settings], database_url: str, mode: str, standin: Auth0Standin
) -> Settings:
    if mode == "local":
        return make_settings(database_url=database_url)
    return make_settings(
        database_url=database_url,
        identity_provider="auth0",
        auth0_domain=standin.domain,
        auth0_client_id=standin.client_id,
        auth0_client_secret=SecretStr(standin.client_secret),
        auth0_base_url=standin.url,
    )


async def post(http: aiohttp.ClientSession, base: str, email: str) -> tuple[int, dict[str, Any]]:
    body = orjson.dumps({"email": email, "password": PASSWORD})
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{base}/user/signup", data=body, headers=headers) as response:
        answer: dict[str, Any] = await response.json(content_type=None)
        if response.status >= 400:
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert answer["status"] == response.status
        return response.status, answer


async def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            counts = {}
            for table in (t.users, t.signups, t.outbox):
                query = sa.select(sa.func.count()).select_from(table)
                counts[table.name] = (await conn.execute(query)).scalar_one()
            return counts
    finally:
        await engine.dispose()


async def wipe(url: str) -> None:
    engine = create_engine(url, writer=True)
    try:
        async with engine.begin() as conn:
            for table in (t.users, t.signups, t.outbox):
                await conn.execute(sa.delete(table))
    finally:
        await engine.dispose()


async def test_case_variants_give_one_account_in_both_modes_alike(
    make_settings: Callable[..., Settings],
    database_url: str,
    standin: Auth0Standin,
    http: aiohttp.ClientSession,
) -> None:
    answers: dict[str, list[tuple[int, str | None]]] = {}
    for mode in MODES:
        await wipe(database_url)  # each mode from empty tables
        seen: list[tuple[int, str | None]] = []
        async with serving(mode_settings(make_settings, database_url, mode, standin)) as base:
            for email, _ in VARIANTS:
                status, answer = await post(http, base, email)
                seen.append((status, answer["email"] if status == 201 else None))
        answers[mode] = seen
        counts = await row_counts(database_url)
        assert counts["outbox"] == 2, f"{mode}: one event per account"
        assert counts["users"] == (2 if mode == "local" else 0)
    expected = [(s, e.strip().lower() if s == 201 else None) for e, s in VARIANTS]
    assert answers["local"] == expected
    assert answers["auth0"] == answers["local"], "both modes agree"
    stored = sorted(u["email"] for u in standin.state.users.values())
    assert stored == ["adan1@example.com", "adan2@example.com"]
    assert standin.state.counters.create_status[409] == 4, "Auth0 itself said 'exists'"


@pytest.mark.parametrize("mode", MODES)
async def test_32_parallel_case_variants_make_one_account_and_one_event(
    mode: str,
    make_settings: Callable[..., Settings],
    database_url: str,
    standin: Auth0Standin,
    http: aiohttp.ClientSession,
) -> None:
    rng = random.Random(16)
    variants: set[str] = set()
    while len(variants) < 32:
        variants.add("".join(c.upper() if rng.random() < 0.5 else c for c in "race4@example.com"))
    async with serving(mode_settings(make_settings, database_url, mode, standin)) as base:
        answers = await asyncio.gather(*(post(http, base, v) for v in sorted(variants)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * 31, statuses
    assert [a["email"] for s, a in answers if s == 201] == ["race4@example.com"]
    counts = await row_counts(database_url)
    assert counts["outbox"] == 1, "exactly one event"
    if mode == "local":
        assert counts["users"] == 1, "exactly one account"
    else:
        assert [u["email"] for u in standin.state.users.values()] == ["race4@example.com"]


@pytest.mark.parametrize("mode", MODES)
async def test_look_alikes_and_undeliverable_addresses_are_refused_and_write_nothing(
    mode: str,
    make_settings: Callable[..., Settings],
    database_url: str,
    standin: Auth0Standin,
    http: aiohttp.ClientSession,
) -> None:
    async with serving(mode_settings(make_settings, database_url, mode, standin)) as base:
        for email, why in REFUSED:
            status, problem = await post(http, base, email)
            assert status == 422, (email, problem)
            assert [e["field"] for e in problem["errors"]] == ["email"]
            assert why in problem["errors"][0]["message"]
    assert await row_counts(database_url) == {"users": 0, "signups": 0, "outbox": 0}
    assert standin.state.counters.create_calls == 0
    assert standin.state.users == {}


async def test_an_account_kept_as_typed_before_the_change_still_owns_its_mailbox(
    make_settings: Callable[..., Settings], database_url: str, http: aiohttp.ClientSession
) -> None:
    engine = create_engine(database_url, writer=True)
    old = {
        "user_id": "local|old",
        "email": "Grace@Example.com",  # as the store kept it before addresses were lower-cased
        "password_hash": "$argon2id$placeholder",
        "email_verified": False,
        "created_at": now(),
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(t.users).values(**old))
        with pytest.raises(IntegrityError):  # ux_users_email_folded, below the app
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(t.users).values(
                        **{**old, "user_id": "local|new", "email": "GRACE@example.COM"}
                    )
                )
    finally:
        await engine.dispose()
    async with serving(make_settings(database_url=database_url)) as base:
        for email in ("grace@example.com", "GRACE@EXAMPLE.COM"):
            status, _ = await post(http, base, email)
            assert status == 409
    counts = await row_counts(database_url)
    assert (counts["users"], counts["outbox"]) == (1, 0)


async def test_both_providers_find_one_account_under_every_casing(
    make_settings: Callable[..., Settings], database_url: str, standin: Auth0Standin
) -> None:
    """What reconciliation finds: the local store (read by the service layer over SQL)
    and the Auth0 stand-in over HTTP both answer for the mailbox, not for the spelling."""
    uow = SqlUnitOfWork(
        writer=create_engine(database_url, writer=True),
        reader=create_engine(database_url),
        clock=now,
    )
    local = LocalIdentityProvider(now, memory_kib=1024, time_cost=1)
    stored = RegistrationService(uow=uow, provider=local, clock=now, source="urn:test")
    auth0 = Auth0IdentityProvider.from_settings(
        mode_settings(make_settings, database_url, "auth0", standin)
    )
    try:
        account = await local.create_user(Applicant("Kit@Example.com"), PASSWORD)
        await uow.run(lambda tx: tx.users.add(account))
        await auth0.create_user(Applicant("Kit@Example.com"), PASSWORD)
        twin = CreatedAccount("local|twin", "KIT@example.com", False, now(), password_hash="h")
        with pytest.raises(EmailAlreadyRegistered):
            await uow.run(lambda tx: tx.users.add(twin))
        with pytest.raises(EmailAlreadyRegistered):
            await auth0.create_user(Applicant("kit@EXAMPLE.com"), PASSWORD)
        for variant in ("kit@example.com", "KIT@EXAMPLE.COM", "kIt@eXample.com"):
            assert [a.user_id for a in await stored.accounts_for(variant)] == [account.user_id]
            assert len(await auth0.find_by_email(variant)) == 1
    finally:
        await auth0.close()
        await local.close()
        await uow.close()
        await uow.writer.dispose()
        await uow.reader.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def test_the_migration_stops_while_accounts_share_a_mailbox(database_url: str) -> None:
    """Rows that collide are a person's to settle: the upgrade changes nothing and says so;
    once they are settled it goes through."""
    config = alembic_config(database_url)
    command.downgrade(config, "0002")

    async def run(*statements: Any) -> list[Any]:
        engine = create_engine(database_url, writer=True)
        try:
            async with engine.begin() as conn:
                return [await conn.execute(s) for s in statements]
        finally:
            await engine.dispose()

    row = {"password_hash": "h", "email_verified": False, "created_at": now()}
    asyncio.run(
        run(
            sa.insert(t.users).values(user_id="local|1", email="Ada@example.com", **row),
            sa.insert(t.users).values(user_id="local|2", email="ada@example.com", **row),
            sa.insert(t.users).values(user_id="local|3", email="bob@example.com", **row),
        )
    )
    with pytest.raises(RuntimeError, match="1 e-mail address") as refused:
        command.upgrade(config, "head")
    assert "ada@example.com" not in str(refused.value).lower(), "no address in the message"

    def version() -> str:
        async def read() -> str:
            engine = create_engine(database_url)
            try:
                async with engine.connect() as conn:
                    query = sa.text("SELECT version_num FROM alembic_version")
                    return str((await conn.execute(query)).scalar_one())
            finally:
                await engine.dispose()

        return asyncio.run(read())

    assert version() == "0002"
    asyncio.run(run(sa.delete(t.users).where(t.users.c.user_id == "local|2")))
    command.upgrade(config, "head")
    assert version() == ScriptDirectory.from_config(config).get_current_head()
    with pytest.raises(IntegrityError):
        asyncio.run(
            run(sa.insert(t.users).values(user_id="local|4", email="ADA@EXAMPLE.COM", **row))
        )
