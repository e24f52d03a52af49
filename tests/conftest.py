"""Fixtures every kind of test shares: real services, isolated by unique names."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import structlog
from hypothesis import HealthCheck, settings

from signup.adapters.database import migrate
from signup.settings import Settings

# The machine is shared by services and parallel work: time is no test of correctness here.
settings.register_profile(
    "signup", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
settings.load_profile("signup")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that runs a command in process (typer's CliRunner) configures logging to
    the runner's stream, closed when it ends: the next test's first log line would raise
    there (inside whatever it was doing). Every test starts with the logging it found."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def amqp_url() -> str:
    # A missing broker must fail the run, never skip it: .ci/run starts RabbitMQ.
    assert _reachable(5672), "RabbitMQ is not reachable on 127.0.0.1:5672 (start it: see .ci/run)"
    return AMQP_URL


@pytest.fixture
def exchange_name() -> str:
    return unique("test-users")


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/signup.db"
    migrate(url)
    return url


async def _create_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of the test's own, dropped afterwards."""
    assert _reachable(5432), "PostgreSQL is not reachable on 127.0.0.1:5432 (start it: see .ci/run)"
    name = f"signup_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(name))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    migrate(url)
    try:
        yield url
    finally:
        asyncio.run(_drop_database(name))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both supported databases, each fresh and migrated."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_settings(sqlite_url: str, amqp_url: str, exchange_name: str) -> Callable[..., Settings]:
    """Settings for an in-process service of the test's own: its database and exchange,
    rate limits off, a quick relay and a cheap hash; overrides as keywords."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": sqlite_url,
            "amqp_url": amqp_url,
            "exchange": exchange_name,
            "rate_limit_per_ip": "",
            "rate_limit_per_email": "",
            "relay_poll_seconds": 0.2,
            "argon2_memory_kib": 1024,
            "argon2_time_cost": 1,
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
async def bound_queue(amqp_url: str, exchange_name: str) -> AsyncIterator[object]:
    """An exclusive queue bound to the test's exchange with `user.new` (declared first)."""
    import aio_pika

    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "user.new")
    try:
        yield queue
    finally:
        await exchange.delete(if_unused=False)
        await connection.close()
