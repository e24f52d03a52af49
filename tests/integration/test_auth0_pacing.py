"""A burst of sign-ups against a token bucket: the gate paces them at the bucket's refill.

The stand-in meters its Management API with a bucket of 5 refilled at 2 a second, and
says in `x-ratelimit-reset` either when the bucket is full again or when the next token
comes (`reset_means`; tenants answer both ways). Twelve creates start at once through the
real provider over HTTP. Both the stand-in's bucket and the provider's gate read one
`ManualClock`, which the test moves on in small steps whenever nothing is in flight, so
seconds of pacing pass without waiting for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from signup.adapters.auth0 import Auth0IdentityProvider
from signup.domain.model import Applicant, CreatedAccount
from signup.testing.auth0_standin import Auth0Standin, TokenBucket, running_standin
from signup.testing.auth0_standin.cli import _config_from_args, _parser
from signup.testing.clock import ManualClock

PASSWORD = "Tr0ub4dour&3-horse"
BURST = 5
RATE = 2.0
CALLS = 12
STEP = 0.05  # seconds the clock moves at a time: finer than a token's 0.5 s
READINGS = ["full-bucket", "next-token"]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.002)


def make_provider(standin: Auth0Standin, clock: ManualClock) -> Auth0IdentityProvider:
    # The production queue deadline (SIGNUP_AUTH0_QUEUE_DEADLINE_SECONDS' default).
    return Auth0IdentityProvider(
        domain=standin.domain,
        base_url=standin.url,
        client_id=standin.client_id,
        client_secret=SecretStr(standin.client_secret),
        connection=standin.connection,
        timeout_seconds=2.0,
        queue_deadline_seconds=5.0,
        clock=clock,
    )


async def burst(
    provider: Auth0IdentityProvider, clock: ManualClock, calls: int = CALLS
) -> tuple[list[CreatedAccount | BaseException], float]:
    """`calls` creates at once; the clock moves STEP whenever none is on the wire.

    Returns the results and the seconds the clock moved until the last one ended.
    """
    started = clock.monotonic()
    tasks = [
        asyncio.create_task(provider.create_user(Applicant(f"burst{i}@example.com"), PASSWORD))
        for i in range(calls)
    ]
    gate = provider.gate

    def settled() -> bool:
        # Every call is finished or waiting in the gate, and none is being answered.
        done = sum(t.done() for t in tasks)
        return gate.in_flight == 0 and done + gate.queued == calls

    for _ in range(int(30 / STEP)):
        await until(settled)
        if all(t.done() for t in tasks):
            break
        clock.advance(STEP)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return results, clock.monotonic() - started


@pytest.fixture(params=[0.05, 0.3, 0.51, 0.7, 0.95], ids=lambda f: f"wall+{f}")
def clock(request: pytest.FixtureRequest) -> ManualClock:
    # Where in its second the wall clock starts moves every reset, rounded up to a second.
    return ManualClock(wall=1_800_000_000 + request.param)


@pytest.fixture(params=READINGS)
async def standin(
    request: pytest.FixtureRequest, clock: ManualClock
) -> AsyncIterator[Auth0Standin]:
    async with running_standin(
        clock=clock.monotonic,
        wall_clock=clock.time,
        rate_per_second=RATE,
        burst=BURST,
        reset_means=request.param,
    ) as s:
        yield s


async def test_a_burst_of_12_draws_at_most_one_429_and_all_are_created(
    standin: Auth0Standin, clock: ManualClock
) -> None:
    provider = make_provider(standin, clock)
    try:
        results, took = await burst(provider, clock)
    finally:
        await provider.close()

    created = [r for r in results if isinstance(r, CreatedAccount)]
    failed = [r for r in results if not isinstance(r, CreatedAccount)]
    counters = standin.state.counters
    print(
        f"\n{standin.config.reset_means}: {counters.rate_limited} x 429, "
        f"{counters.create_status[201]} created, {took:.2f} s, "
        f"rate estimate {provider.gate.rate}"
    )
    assert failed == []
    assert len({a.user_id for a in created}) == CALLS
    assert len(standin.state.users) == CALLS
    assert counters.rate_limited <= 1
    assert counters.create_status[201] == CALLS
    gate = provider.gate
    assert gate.waits >= CALLS - BURST  # held in the gate, not sent to be refused
    # The learned rate is a lower bound of the bucket's: never more than it refills.
    assert gate.rate is not None and 0 < gate.rate <= RATE
    assert gate.full_bucket_reset == (standin.config.reset_means == "full-bucket")


# -- the stand-in's two readings ---------------------------------------------------------


def test_next_token_reset_is_now_while_a_token_is_left_then_the_next_token() -> None:
    clock, wall = FakeClock(100.0), FakeClock(1_800_000_000.3)
    bucket = TokenBucket(2.0, 3, clock=clock, wall_clock=wall, reset_means="next-token")
    assert bucket.take()
    assert bucket.headers()["x-ratelimit-reset"] == "1800000001"  # a token is left: now
    assert bucket.take() and bucket.take()
    # Empty: the next token in 0.5 s (the full bucket would be 1.5 s away).
    assert bucket.headers() == {
        "x-ratelimit-limit": "3",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1800000001",
    }
    clock.now += 0.4
    wall.now += 0.4  # 0.8 tokens; the next one at .8 s, rounded up to the next second
    assert bucket.headers()["x-ratelimit-reset"] == "1800000001"
    clock.now += 0.3
    wall.now += 0.3
    assert bucket.take()  # 1.4 tokens: one is taken, the next in 0.3 s
    assert bucket.headers()["x-ratelimit-reset"] == "1800000002"


def test_full_bucket_reset_is_when_the_bucket_is_full_again() -> None:
    clock, wall = FakeClock(100.0), FakeClock(1_800_000_000.3)
    bucket = TokenBucket(2.0, 3, clock=clock, wall_clock=wall)
    assert bucket.reset_means == "full-bucket"
    assert bucket.take()
    assert bucket.headers()["x-ratelimit-reset"] == "1800000001"  # 0.5 s to full
    assert bucket.take() and bucket.take()
    assert bucket.headers()["x-ratelimit-reset"] == "1800000002"  # 1.5 s to full


def test_reset_means_is_a_setting_of_the_standin_and_its_command_line() -> None:
    with pytest.raises(ValueError, match="reset_means"):
        Auth0Standin(reset_means="whenever")
    standin = Auth0Standin(rate_per_second=2.0, burst=3)
    assert standin.config.reset_means == "full-bucket"
    standin.configure(reset_means="next-token")
    assert standin._rate.bucket is not None
    assert standin._rate.bucket.reset_means == "next-token"

    config: dict[str, Any] = _config_from_args(
        _parser().parse_args(["--reset-means", "next-token"])
    )
    assert config["reset_means"] == "next-token"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--reset-means", "whenever"])
