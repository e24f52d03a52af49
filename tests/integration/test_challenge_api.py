"""The proof-of-work challenge through the API, with the used solutions in SQLite,
PostgreSQL or Redis: each refusal is a 422 on `challenge` that reaches no provider."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from signup.adapters import tables as t
from signup.adapters.challenge import AltchaSigner, DatabaseSpentSolutions
from signup.bootstrap import bootstrap
from signup.settings import Settings
from signup.testing.pow import solve, token
from signup.testing.server import serving

KEY = "challenge-key-" + "k" * 30
OLD_KEY = "challenge-key-" + "o" * 30
PASSWORD = "violet tractor anthem"
DIFFICULTY = 2_000


def _redis_reachable() -> str:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:  # a missing Redis fails the run: .ci/run starts it
        raise AssertionError("Redis is not reachable on 127.0.0.1:6379") from exc
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    store = request.param
    database = request.getfixturevalue("postgres_url" if store == "postgresql" else "sqlite_url")
    return make_settings(
        database_url=database,
        challenge="pow",
        challenge_key=KEY,
        challenge_previous_keys=OLD_KEY,
        challenge_difficulty=DIFFICULTY,
        redis_url=_redis_reachable() if store == "redis" else None,
    )


@pytest.fixture
async def base(settings: Settings) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def challenge(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/signup/challenge") as response:
        assert response.status == 200
        assert response.headers["cache-control"] == "no-store"
        body: dict[str, Any] = await response.json()
        return body


async def sign_up(
    http: aiohttp.ClientSession,
    base: str,
    solution: str | None,
    key: str | None = None,
    **extra: Any,
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"email": f"{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD}
    body.update(extra)
    if solution is not None:
        body["challenge"] = solution
    headers = {"Idempotency-Key": key} if key else {}
    async with http.post(f"{base}/user/signup", json=body, headers=headers) as response:
        return response.status, await response.json()


def refused_with(answer: tuple[int, dict[str, Any]], code: str) -> None:
    status, body = answer
    assert status == 422, body
    assert body["type"] == "urn:signup:problem:invalid-input"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("challenge", code)]


async def counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: int(
                    (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                )
                for table in (t.users, t.signups, t.outbox, t.spent_challenges)
            }
    finally:
        await engine.dispose()


async def test_a_solved_challenge_signs_up_once(
    settings: Settings, base: str, http: aiohttp.ClientSession
) -> None:
    offered = await challenge(http, base)
    assert set(offered) == {"algorithm", "challenge", "maxnumber", "salt", "signature"}
    assert offered["algorithm"] == "SHA-256" and offered["maxnumber"] == DIFFICULTY
    solution = solve(offered)
    status, created = await sign_up(http, base, solution, key="first")
    assert status == 201, created
    # The same request again (a lost answer): the first answer, nothing twice.
    assert await sign_up(http, base, solution, key="first", email=created["email"]) == (
        201,
        created,
    )
    refused_with(await sign_up(http, base, solution), "challenge.used")
    refused_with(await sign_up(http, base, solution, key="another"), "challenge.used")
    after = await counts(settings.database_url)
    assert (after["users"], after["signups"], after["outbox"]) == (1, 1, 1)
    # Used solutions live in Redis when it is configured, else in the database.
    assert after["spent_challenges"] == (0 if settings.redis_url else 1)


async def test_missing_wrong_foreign_and_expired_solutions_create_nothing(
    settings: Settings, base: str, http: aiohttp.ClientSession
) -> None:
    offered = await challenge(http, base)
    good = solve(offered)
    now = datetime.now(UTC)
    expired = solve(AltchaSigner(KEY, [], DIFFICULTY).issue(now - timedelta(seconds=1)))
    foreign = solve(AltchaSigner("another-site-" + "x" * 30, [], DIFFICULTY).issue(now))
    number = next(n for n in range(DIFFICULTY + 2) if token(offered, n) == good)
    refused_with(await sign_up(http, base, None), "challenge.missing")
    refused_with(await sign_up(http, base, ""), "challenge.missing")
    refused_with(await sign_up(http, base, token(offered, number + 1)), "challenge.invalid")
    refused_with(await sign_up(http, base, foreign), "challenge.invalid")
    refused_with(await sign_up(http, base, "bm90IGpzb24="), "challenge.invalid")
    refused_with(await sign_up(http, base, expired), "challenge.expired")
    assert await counts(settings.database_url) == {
        "users": 0,
        "signups": 0,
        "outbox": 0,
        "spent_challenges": 0,
    }
    # Fields are checked first: a bad password does not spend the solution.
    status, body = await sign_up(http, base, good, password="short")
    assert status == 422 and [e["field"] for e in body["errors"]] == ["password"]
    assert (await sign_up(http, base, good))[0] == 201


async def test_challenges_signed_with_the_previous_key_still_pass(
    base: str, http: aiohttp.ClientSession
) -> None:
    handed_out = AltchaSigner(OLD_KEY, [], DIFFICULTY).issue(
        datetime.now(UTC) + timedelta(seconds=60)
    )
    assert (await sign_up(http, base, solve(handed_out)))[0] == 201


async def test_with_the_challenge_off_none_is_asked_for(
    make_settings: Callable[..., Settings], http: aiohttp.ClientSession
) -> None:
    async with serving(make_settings()) as base:
        assert (await sign_up(http, base, None))[0] == 201
        assert (await sign_up(http, base, "aWdub3JlZCB3aGlsZSBvZmY="))[0] == 201  # ignored
        async with http.get(f"{base}/signup/challenge") as response:
            assert response.status == 404


async def test_expired_records_are_pruned(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=database_url, challenge="pow", challenge_key=KEY)
    container = bootstrap(settings)
    try:
        assert container.challenge is not None
        spent = container.challenge.spent
        assert isinstance(spent, DatabaseSpentSolutions)
        now = datetime.now(UTC)
        assert await spent.spend("a" * 64, "o1", now - timedelta(minutes=5))
        assert await spent.spend("b" * 64, "o1", now + timedelta(minutes=5))
        assert not await spent.spend("b" * 64, "o2", now + timedelta(minutes=5))
        assert await spent.spend("b" * 64, "o1", now + timedelta(minutes=5))
        assert await spent.prune_expired(now - timedelta(minutes=1), 100) == 1
        assert await spent.prune_expired(now - timedelta(minutes=1), 100) == 0
        assert not await spent.spend("b" * 64, "o3", now + timedelta(minutes=5)), "kept"
    finally:
        await container.aclose()


async def test_with_redis_away_a_good_solution_gets_503_not_500(
    make_settings: Callable[..., Settings], http: aiohttp.ClientSession
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = make_settings(
        challenge="pow",
        challenge_key=KEY,
        challenge_difficulty=DIFFICULTY,
        redis_url=f"redis://127.0.0.1:{port}/0",
    )
    async with (
        serving(settings) as base,
        http.post(
            f"{base}/user/signup",
            json={
                "email": "redis.away@example.com",
                "password": PASSWORD,
                "challenge": solve(await challenge(http, base)),
            },
        ) as response,
    ):
        assert response.status == 503
        assert response.headers["retry-after"] == "5"
        assert (await response.json())["type"] == "urn:signup:problem:storage-unavailable"
    assert (await counts(settings.database_url))["users"] == 0
