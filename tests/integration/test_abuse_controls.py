"""Rate limits shared through Redis, and the enumeration-safe answers."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue

from signup.adapters.rate_limit import LimitsAttemptLimiter
from signup.settings import Settings
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"


@pytest.fixture
def redis_url() -> str:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:  # a missing Redis fails the run: .ci/run starts it
        raise AssertionError("Redis is not reachable on 127.0.0.1:6379") from exc
    return "redis://127.0.0.1:6379/0"


async def test_instances_share_limits_through_redis(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    first = LimitsAttemptLimiter({"ip": "3/minute"}, redis_url, prefix=prefix)
    second = LimitsAttemptLimiter({"ip": "3/minute"}, redis_url, prefix=prefix)
    answers = [await (first if i % 2 else second).hit("ip", "203.0.113.9") for i in range(4)]
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and 1 <= answers[3] <= 60
    assert await first.hit("ip", "203.0.113.10") is None, "other addresses are not affected"


async def test_several_limits_joined_by_semicolons(redis_url: str) -> None:
    limiter = LimitsAttemptLimiter({"email": "2/second;3/hour"}, None)
    assert [await limiter.hit("email", "a@b.c") is None for _ in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    assert await LimitsAttemptLimiter({"email": ""}, None).hit("email", "a@b.c") is None


async def test_hidden_accounts_answer_alike_and_send_one_event(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue
) -> None:
    settings = make_settings(hide_existing_accounts=True)
    body = {"email": "hidden@example.com", "password": PASSWORD}
    async with serving(settings) as url, aiohttp.ClientSession() as http:
        answers = []
        for _ in range(2):
            async with http.post(f"{url}/user/signup", json=body) as response:
                answers.append((response.status, await response.json()))
        import asyncio

        events = []
        for _ in range(100):
            message = await bound_queue.get(fail=False)
            if message is not None:
                await message.ack()
                events.append(orjson.loads(message.body))
            elif events:
                await asyncio.sleep(0.5)
                if await bound_queue.get(fail=False) is None:
                    break
            else:
                await asyncio.sleep(0.1)
    (s1, b1), (s2, b2) = answers
    assert s1 == s2 == 201 and set(b1) == set(b2) == {"user_id", "email"}
    assert b1["email"] == b2["email"] and b1["user_id"] != b2["user_id"]
    assert len(events) == 1 and events[0]["data"]["user_id"] == b1["user_id"]
