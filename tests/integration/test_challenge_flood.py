"""A flood of scripted sign-ups against the proof of work: 2,000 attempts without a good
solution (missing, replayed, forged) create no account, never reach the identity
provider, and real sign-ups made meanwhile are all answered 201."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from signup.adapters import tables as t
from signup.adapters.challenge import AltchaSigner
from signup.adapters.local_users import LocalIdentityProvider
from signup.bootstrap import bootstrap
from signup.domain.model import Applicant, CreatedAccount
from signup.settings import Settings
from signup.testing.pow import solve, token
from signup.testing.server import serving

KEY = "flood-test-key-" + "f" * 30
PASSWORD = "violet tractor anthem"
FLOOD = 2_000
REAL = 25
CONCURRENCY = 40


class CountingProvider(LocalIdentityProvider):
    """The local store, counting the accounts it was asked to make (its hash included)."""

    calls = 0

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount:
        type(self).calls += 1
        return await super().create_user(applicant, password)


def _email(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:12]}@example.com"


async def test_a_flood_without_good_solutions_makes_nothing_and_people_still_sign_up(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(challenge="pow", challenge_key=KEY, challenge_difficulty=1_000)
    CountingProvider.calls = 0
    provider = CountingProvider(
        lambda: datetime.now(UTC), time_cost=1, memory_kib=1024, parallelism=1
    )
    container = bootstrap(settings, provider=provider)
    foreign = AltchaSigner("another-site-" + "x" * 30, [], 1_000)
    async with serving(settings, container) as base, aiohttp.ClientSession() as http:

        async def challenge() -> dict[str, Any]:
            async with http.get(f"{base}/signup/challenge") as response:
                body: dict[str, Any] = await response.json()
                return body

        async def post(body: dict[str, Any]) -> tuple[int, Any]:
            async with http.post(f"{base}/user/signup", json=body) as response:
                return response.status, await response.json()

        # One real sign-up first: its solution is what the flood replays.
        first = solve(await challenge())
        status, _ = await post({"email": _email("real"), "password": PASSWORD, "challenge": first})
        assert status == 201
        offered = await challenge()
        right = solve(offered)
        wrong_number = next(
            token(offered, n) for n in itertools.count() if token(offered, n) != right
        )
        forged = [
            None,  # missing
            first,  # replayed
            wrong_number,  # forged: a wrong answer to a real challenge
            solve(foreign.issue(datetime.now(UTC) + timedelta(minutes=5))),  # another key
            base64.b64encode(b'{"algorithm": "SHA-256", "number": 1}').decode(),  # garbage
        ]

        async def attacker(i: int) -> tuple[int, str]:
            body: dict[str, Any] = {"email": _email("bot"), "password": PASSWORD}
            if (solution := forged[i % len(forged)]) is not None:
                body["challenge"] = solution
            status, answer = await post(body)
            codes = [e.get("code", "") for e in answer.get("errors", [])]
            return status, ",".join(codes)

        async def person() -> int:
            solution = solve(await challenge())
            status, _ = await post(
                {"email": _email("person"), "password": PASSWORD, "challenge": solution}
            )
            return status

        gate = asyncio.Semaphore(CONCURRENCY)

        async def limited(i: int) -> tuple[int, str]:
            async with gate:
                return await attacker(i)

        flood = asyncio.gather(*(limited(i) for i in range(FLOOD)))
        people = []
        flooding = []
        for _ in range(REAL):  # one by one, while the flood runs
            people.append(await person())
            flooding.append(not flood.done())
        answers = await flood

    assert flooding[0], "the people signed up while the flood was under way"
    assert people == [201] * REAL
    seen = Counter(answers)
    assert set(seen) == {
        (422, "challenge.missing"),
        (422, "challenge.used"),
        (422, "challenge.invalid"),
    }, seen
    assert sum(seen.values()) == FLOOD
    assert CountingProvider.calls == 1 + REAL, "no attempt of the flood reached the provider"
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            for table in (t.users, t.signups, t.outbox):
                rows = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                assert rows == 1 + REAL, table.name
    finally:
        await engine.dispose()
