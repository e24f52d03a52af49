"""The stand-in's rate limit runs on clocks a test can drive: no sleeping to refill it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from signup.testing.auth0_standin import (
    UNLIMITED,
    Auth0Standin,
    RateLimit,
    TokenBucket,
    running_standin,
)

WALL_START = 1_800_000_000.25  # Unix seconds; a fraction, so that rounding up shows


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_by_its_clock_and_resets_by_the_wall_clock() -> None:
    clock, wall = FakeClock(100.0), FakeClock(WALL_START)
    bucket = TokenBucket(2.0, 3, clock=clock, wall_clock=wall)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    # Empty: full again in 3 / 2 s; the header rounds up to whole Unix seconds.
    assert bucket.headers() == {
        "x-ratelimit-limit": "3",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1800000002",
    }
    wall.now += 60.0  # the wall clock alone refills nothing
    assert not bucket.take()
    clock.now += 0.5  # one token at 2 a second
    assert bucket.take()
    assert not bucket.take()
    clock.now += 10.0  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_no_limit_says_so_in_its_headers() -> None:
    limit = RateLimit(None, 10, wall_clock=FakeClock(WALL_START))
    assert all(limit.take() for _ in range(1000))
    assert limit.headers() == {
        "x-ratelimit-limit": str(UNLIMITED),
        "x-ratelimit-remaining": str(UNLIMITED),
        "x-ratelimit-reset": "1800000001",
    }
    exhausted = limit.exhausted_headers(reset_in=5.0)
    assert exhausted["x-ratelimit-remaining"] == "0"
    assert exhausted["x-ratelimit-reset"] == "1800000006"


@pytest.fixture
def clocks() -> tuple[FakeClock, FakeClock]:
    return FakeClock(0.0), FakeClock(WALL_START)


@pytest.fixture
async def standin(clocks: tuple[FakeClock, FakeClock]) -> AsyncIterator[Auth0Standin]:
    clock, wall = clocks
    async with running_standin(
        clock=clock, wall_clock=wall, rate_per_second=1.0, burst=1, share_429_reset_seconds=7.0
    ) as s:
        yield s


async def create(
    standin: Auth0Standin, http: aiohttp.ClientSession, token: str, i: int
) -> tuple[int, str]:
    body = {
        "connection": standin.connection,
        "email": f"clock{i}@example.com",
        "password": "s3cret-enough",
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(f"{standin.url}/api/v2/users", json=body, headers=headers) as resp:
        return resp.status, resp.headers["x-ratelimit-reset"]


async def test_served_stand_in_answers_by_the_injected_clocks(
    standin: Auth0Standin, clocks: tuple[FakeClock, FakeClock]
) -> None:
    clock, wall = clocks
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": standin.client_id,
            "client_secret": standin.client_secret,
            "audience": standin.audience,
        }
        async with http.post(f"{standin.url}/oauth/token", json=form) as resp:
            token = (await resp.json())["access_token"]
        # The one token is taken: full again in 1 s by the fake wall clock.
        assert await create(standin, http, token, 0) == (201, "1800000002")
        assert await create(standin, http, token, 1) == (429, "1800000002")
        clock.now += 1.0
        wall.now += 1.0
        assert await create(standin, http, token, 2) == (201, "1800000003")
        # An injected 429 puts its reset `share_429_reset_seconds` after the wall clock.
        clock.now += 1.0
        standin.configure(share_429=1.0)
        assert await create(standin, http, token, 3) == (429, "1800000009")
    assert standin.state.counters.rate_limited == 2
    assert len(standin.state.users) == 2
