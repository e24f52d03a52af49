"""`signup serve` as users run it: a real process, real HTTP, real RabbitMQ."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue

from signup.testing.processes import ServiceProcess, run_cli

pytestmark = pytest.mark.e2e
PASSWORD = "violet tractor anthem"


def env_for(tmp_path: Path, exchange: str, **extra: str) -> dict[str, str]:
    return {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/signup.db",
        "SIGNUP_EXCHANGE": exchange,
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_RELAY_POLL_SECONDS": "0.2",
        **extra,
    }


async def collect(
    queue: AbstractQueue, expect: int, seconds: float = 20
) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for _ in range(int(seconds * 20)):
        message = await queue.get(fail=False)
        if message is None:
            if len(events) >= expect:
                break
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        events.append(orjson.loads(message.body))
    return events


async def test_serve_signups_reach_the_queue_and_the_cli_reports_them(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    env = env_for(tmp_path, exchange_name)
    service = ServiceProcess(env, tmp_path / "serve.log").start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.url}/signup") as page:
                assert page.status == 200 and "Naked Coders" in await page.text()
            statuses = []
            for i in range(20):
                body = {"email": f"e2e{i}@example.com", "password": PASSWORD, "given_name": f"P{i}"}
                async with http.post(f"{service.url}/user/signup", json=body) as response:
                    statuses.append(response.status)
            assert statuses == [201] * 20
        events = await collect(bound_queue, 20)
        assert sorted(e["data"]["email"] for e in events) == sorted(
            f"e2e{i}@example.com" for i in range(20)
        )  # type: ignore[index]
    finally:
        service.stop()
    logs = service.logs()
    # uvicorn re-raises the SIGTERM it handled once its shutdown is complete.
    assert service.process is not None and service.process.returncode in (0, -15), logs
    assert "Application shutdown complete" in logs and "relay.stopped" in logs
    assert PASSWORD not in logs
    assert PASSWORD.encode() not in (tmp_path / "signup.db").read_bytes()

    status = run_cli(env, "outbox", "status")
    assert status.returncode == 0, status.stderr
    assert "20" in status.stdout

    replay = run_cli(env, "outbox", "replay", "--since", "2000-01-01T00:00:00")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    replayed = await collect(bound_queue, 20)
    assert {e["id"] for e in replayed} == {e["id"] for e in events}, "replays keep the event ids"


async def test_signups_succeed_while_the_relay_is_elsewhere_and_a_relay_sends_them(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    env = env_for(tmp_path, exchange_name)
    service = ServiceProcess(env, tmp_path / "serve.log", "--no-relay").start()
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                body = {"email": f"norelay{i}@example.com", "password": PASSWORD}
                async with http.post(f"{service.url}/user/signup", json=body) as response:
                    assert response.status == 201
        assert await collect(bound_queue, 0, seconds=1) == []
    finally:
        service.stop()
    relay = subprocess.Popen(
        [sys.executable, "-m", "signup", "relay"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "relay.log").open("wb"),
    )
    try:
        assert len(await collect(bound_queue, 5)) == 5
    finally:
        relay.terminate()
        assert relay.wait(20) == 0


def test_cli_help_explains_each_command() -> None:
    result = run_cli({}, "--help")
    assert result.returncode == 0
    for command in ("serve", "relay", "migrate", "outbox", "reconcile", "worker"):
        assert command in result.stdout
    outbox = run_cli({}, "outbox", "--help")
    assert "status" in outbox.stdout and "replay" in outbox.stdout


async def test_auth0_mode_against_the_standin(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    from signup.testing.auth0_standin import running_standin

    async with running_standin(password_policy="fair") as standin:
        env = env_for(
            tmp_path,
            exchange_name,
            SIGNUP_IDENTITY_PROVIDER="auth0",
            SIGNUP_AUTH0_DOMAIN=standin.domain,
            SIGNUP_AUTH0_CLIENT_ID=standin.client_id,
            SIGNUP_AUTH0_CLIENT_SECRET=standin.client_secret,
            SIGNUP_AUTH0_BASE_URL=standin.url,
        )
        service = ServiceProcess(env, tmp_path / "serve.log").start()
        try:
            async with aiohttp.ClientSession() as http:
                body = {
                    "email": "ada@example.com",
                    "password": "Violet Tractor 42",
                    "given_name": "Ada",
                }
                async with http.post(f"{service.url}/user/signup", json=body) as response:
                    created = await response.json()
                    assert response.status == 201, created
                async with http.post(f"{service.url}/user/signup", json=body) as response:
                    assert response.status == 409
                weak = {"email": "bob@example.com", "password": "violet tractor anthem"}
                async with http.post(f"{service.url}/user/signup", json=weak) as response:
                    problem = await response.json(content_type=None)
                    assert response.status == 422, problem
                    assert problem["errors"][0]["field"] == "password"
            [event] = await collect(bound_queue, 1)
        finally:
            service.stop()
        assert created["user_id"].startswith("auth0|")
        assert event["data"]["user_id"] == created["user_id"]  # type: ignore[index]
        assert event["data"]["identity_provider"] == "auth0"  # type: ignore[index]
        assert {u["email"] for u in standin.state.users.values()} == {"ada@example.com"}
        assert standin.state.counters.token_requests == 1
