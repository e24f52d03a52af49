"""The abuse controls through the API over real HTTP: throwaway and unwanted domains, the
honeypot, breached passwords against the range API stand-in; each refusal a problem with
a stable code, counted by reason, and logged without the address or the password."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aio_pika.abc import AbstractQueue
from prometheus_client import REGISTRY

from signup.adapters.database import sqlite_file
from signup.settings import Settings
from signup.testing.pwned_standin import PwnedStandin, running_pwned_standin, sha1_hex
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"
BREACHED = "tangerine lobster parade"  # seen in breaches, per the stand-in


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("signup_refusals_total", {"reason": reason}) or 0.0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(f"{url}/user/signup", json=body) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


async def events(queue: AbstractQueue, settle: float = 1.0) -> list[dict[str, Any]]:
    """Every message on the queue until none came for `settle` seconds."""
    found: list[dict[str, Any]] = []
    idle = 0.0
    while idle < settle:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            idle += 0.1
            continue
        await message.ack()
        found.append(orjson.loads(message.body))
        idle = 0.0
    return found


def field_codes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in body.get("errors", [])]


async def test_throwaway_denied_and_unlisted_domains_are_refused_with_a_code(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
) -> None:
    before = refusals("email.domain_refused")
    settings = make_settings(email_domains_deny="spam.example")
    async with serving(settings) as url:
        answers = [
            await post(http, url, {"email": email, "password": PASSWORD})
            for email in ("bot@mailinator.com", "bot@mx.yopmail.com", "bot@spam.example")
        ]
        ok = await post(http, url, {"email": "ada@example.com", "password": PASSWORD})
    for status, body, headers in answers:
        assert status == 422 and headers["Content-Type"].startswith("application/problem+json")
        assert body["type"] == "urn:signup:problem:invalid-input"
        assert field_codes(body) == [("email", "email.domain_refused")]
        assert "bot@" not in orjson.dumps(body).decode(), "the message never echoes the input"
    assert ok[0] == 201
    assert refusals("email.domain_refused") - before == 3
    assert [e["data"]["email"] for e in await events(bound_queue)] == ["ada@example.com"]


async def test_an_allow_list_admits_only_its_domains(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
) -> None:
    async with serving(make_settings(email_domains_allow="corp.example")) as url:
        refused = await post(http, url, {"email": "ada@example.com", "password": PASSWORD})
        admitted = await post(http, url, {"email": "ada@eu.corp.example", "password": PASSWORD})
    assert refused[0] == 422 and field_codes(refused[1]) == [("email", "email.domain_refused")]
    assert "work address" in refused[1]["errors"][0]["message"]
    assert admitted[0] == 201


async def test_a_filled_honeypot_answers_as_a_success_and_makes_nothing(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
) -> None:
    before = refusals("honeypot")
    body = {"email": "Bot@Example.com", "password": PASSWORD, "website": "http://spam.example"}
    async with serving(make_settings()) as url:
        trapped = await post(http, url, body)
        real = await post(http, url, {"email": "bot@example.com", "password": PASSWORD})
        empty = await post(
            http, url, {"email": "eve@example.com", "password": PASSWORD, "website": ""}
        )
    status, answer, headers = trapped
    assert (status, real[0], empty[0]) == (201, 201, 201)
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
    assert set(answer) == set(real[1]) == {"user_id", "email"}
    assert answer["email"] == real[1]["email"] == "bot@example.com"
    assert answer["user_id"].startswith("local|") and len(answer["user_id"]) == len(
        real[1]["user_id"]
    )
    assert answer["user_id"] != real[1]["user_id"]
    assert refusals("honeypot") - before == 1
    published = await events(bound_queue)
    # The address was free for the real sign-up after it: the trap created no account.
    assert sorted(e["data"]["user_id"] for e in published) == sorted(
        [real[1]["user_id"], empty[1]["user_id"]]
    )


def rows_in(sqlite_url: str) -> dict[str, int]:
    path = sqlite_file(sqlite_url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("signups", "users", "outbox")
        }


async def test_a_repeated_honeypot_request_gets_the_same_decoy_id_and_writes_nothing(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    http: aiohttp.ClientSession,
) -> None:
    """As a real sign-up's replay answers the same id for the same Idempotency-Key."""
    trap = {"email": "bot@example.com", "password": PASSWORD, "website": "x"}
    real = {"email": "ada@example.com", "password": PASSWORD}

    async def sign_up(body: dict[str, Any], key: str | None) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        async with http.post(f"{url}/user/signup", json=body, headers=headers) as response:
            assert response.status == 201, await response.text()
            user_id: str = (await response.json())["user_id"]
            return user_id

    async with serving(make_settings()) as url:
        first, again = await sign_up(real, "key-real"), await sign_up(real, "key-real")
        assert first == again  # what a bot sees of a real sign-up
        written = rows_in(sqlite_url)
        trapped = [await sign_up(trap, "key-1") for _ in range(3)]
        other_key = await sign_up(trap, "key-2")
        other_email = await sign_up({**trap, "email": "eve@example.com"}, "key-1")
        without_key = {await sign_up(trap, None) for _ in range(2)}
        assert rows_in(sqlite_url) == written, "a decoy writes nothing"
    assert len(set(trapped)) == 1, trapped
    assert trapped[0].startswith("local|") and len(trapped[0]) == len(first)
    assert len({trapped[0], other_key, other_email, *without_key}) == 5


@pytest.fixture
async def pwned(tmp_path: Path) -> AsyncIterator[PwnedStandin]:
    standin = PwnedStandin.with_passwords({BREACHED: 3}, log_file=tmp_path / "pwned.log")
    async with running_pwned_standin(standin=standin) as running:
        yield running


def checking(make_settings: Callable[..., Settings], pwned: PwnedStandin, **more: Any) -> Settings:
    return make_settings(breached_passwords="check", breached_api_url=pwned.url, **more)


async def test_a_breached_password_is_refused_and_the_stand_in_never_sees_it(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
    pwned: PwnedStandin,
    tmp_path: Path,
) -> None:
    before = refusals("password.breached")
    async with serving(checking(make_settings, pwned)) as url:
        refused = await post(http, url, {"email": "ada@example.com", "password": BREACHED})
        created = await post(http, url, {"email": "ada@example.com", "password": PASSWORD})
    status, body, _ = refused
    assert status == 422 and field_codes(body) == [("password", "password.breached")]
    assert "breach" in body["errors"][0]["message"]
    assert created[0] == 201
    assert refusals("password.breached") - before == 1
    # Only five hex digits of each SHA-1 left the service, with the padding header on.
    log = (tmp_path / "pwned.log").read_text()
    assert len(pwned.log) == 2 and log.count("\n") == 2
    assert all("Add-Padding=true" in line for line in pwned.log)
    for password in (BREACHED, PASSWORD):
        digest = sha1_hex(password)
        for secret in (password, digest, digest.lower(), digest[5:], digest[:12]):
            assert secret not in log
        assert f"GET /range/{digest[:5]} " in log


async def test_a_password_seen_less_often_than_the_minimum_is_accepted(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
    pwned: PwnedStandin,
) -> None:
    async with serving(checking(make_settings, pwned, breached_min_count=4)) as url:
        status, _, _ = await post(http, url, {"email": "ada@example.com", "password": BREACHED})
    assert status == 201


async def test_a_burst_asks_the_range_api_once(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
    pwned: PwnedStandin,
) -> None:
    pwned.slow_seconds = 0.3
    prefix = sha1_hex(BREACHED)[:5]
    async with serving(checking(make_settings, pwned)) as url:
        burst = await asyncio.gather(
            *(
                post(http, url, {"email": f"b{i}@example.com", "password": BREACHED})
                for i in range(10)
            )
        )
        later = await post(http, url, {"email": "late@example.com", "password": BREACHED})
    assert {status for status, _, _ in [*burst, later]} == {422}
    assert pwned.requests_for(prefix) == 1


@pytest.mark.parametrize("fault", ["down", "slow"])
async def test_a_failed_look_up_accepts_when_open_and_refuses_when_closed(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
    pwned: PwnedStandin,
    fault: str,
) -> None:
    if fault == "down":
        pwned.down = True
    else:
        pwned.slow_seconds = 2.0
    opened = sample("signup_breached_checks_total", result="unavailable_open")
    closed = refusals("password.check_unavailable")
    body = {"email": "ada@example.com", "password": BREACHED}
    quick = {"breached_timeout_seconds": 0.3}
    async with serving(checking(make_settings, pwned, breached_fail="closed", **quick)) as url:
        status, answer, headers = await post(http, url, body)
    assert status == 503 and headers["Retry-After"].isdigit()
    assert answer["type"] == "urn:signup:problem:password-check-unavailable"
    assert refusals("password.check_unavailable") - closed == 1
    async with serving(checking(make_settings, pwned, **quick)) as url:
        status, answer, _ = await post(http, url, body)
    assert status == 201, answer
    assert sample("signup_breached_checks_total", result="unavailable_open") - opened == 1


async def test_refusals_are_logged_by_reason_without_the_address_or_the_password(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
    pwned: PwnedStandin,
) -> None:
    tries = [
        {"email": "throwaway.person@mailinator.com", "password": PASSWORD},
        {"email": "breached.person@example.com", "password": BREACHED},
        {"email": "honey.person@example.com", "password": PASSWORD, "website": "x"},
        {"email": "brief.person@example.com", "password": "qz7x"},
    ]
    settings = checking(make_settings, pwned, rate_limit_per_email="1/hour")
    with structlog.testing.capture_logs() as logs:
        async with serving(settings) as url:
            for body in tries:
                await post(http, url, body)
            await post(http, url, {"email": "limited.person@example.com", "password": PASSWORD})
            await post(http, url, {"email": "limited.person@example.com", "password": PASSWORD})
    refused = [e for e in logs if e["event"] == "signup.refused"]
    reasons = [r for e in refused for r in e["reasons"]]
    for reason in (
        "email.domain_refused",
        "password.breached",
        "honeypot",
        "too_many_attempts.email",
    ):
        assert reason in reasons
    text = repr(logs)
    for body in tries:
        assert body["email"].split("@")[0] not in text
        assert body["password"] not in text
    assert "limited.person" not in text
