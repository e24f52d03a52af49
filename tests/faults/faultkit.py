"""What the fault tests share: processes, a load of sign-ups, the queue, the checks.

Every wait here is bounded: it polls with a deadline and then fails with a message that
says what was still missing.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from signup.testing.auth0_standin import Auth0Standin
from signup.testing.processes import ServiceProcess, run_cli

# The answers the design lists for POST /user/signup (413/415/403 cannot arise from
# the well-formed, same-origin JSON these tests send).
DESIGN_STATUSES = frozenset({201, 409, 422, 429, 503})
# A client-side bound per request: a hang of the service fails the run, clearly.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


def seed(default: int) -> int:
    """The test's seed; `FAULT_SEED=n` runs the same faults with another random draw."""
    return int(os.environ.get("FAULT_SEED", default))


def assert_conflicts_explained(records: Iterable[SignUpRecord]) -> None:
    """A plain 409 for an e-mail used once: its first attempt was cut by a kill.

    That attempt may have completed (account, event, answer) before the kill took its
    answer away; the retry then rightly finds the e-mail registered.
    """
    for record in records:
        labels = [a.label() for a in record.answers]
        if "409" in labels:
            assert "connection error" in labels[: labels.index("409")], (record.email, labels)


def password_for(index: int) -> str:
    """A distinct, searchable password per sign-up that passes every policy in play."""
    return f"Quartz-{secrets.token_hex(5)}-Lantern{index}"


def common_env(database_url: str, exchange: str, **extra: str) -> dict[str, str]:
    return {
        "SIGNUP_DATABASE_URL": database_url,
        "SIGNUP_EXCHANGE": exchange,
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_RELAY_POLL_SECONDS": "0.2",
        # A killed relay's lease (SQLite) and claims (both) pass after this long.
        "SIGNUP_RELAY_LEASE_SECONDS": "3",
        "SIGNUP_LOG_FORMAT": "json",
        **extra,
    }


def auth0_env(
    database_url: str, exchange: str, standin: Auth0Standin, **extra: str
) -> dict[str, str]:
    return common_env(
        database_url,
        exchange,
        SIGNUP_IDENTITY_PROVIDER="auth0",
        SIGNUP_AUTH0_DOMAIN=standin.domain,
        SIGNUP_AUTH0_CLIENT_ID=standin.client_id,
        SIGNUP_AUTH0_CLIENT_SECRET=standin.client_secret,
        SIGNUP_AUTH0_BASE_URL=standin.url,
        **extra,
    )


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------


class Services:
    """Every `signup serve` a test starts; all are killed at teardown, pass or fail."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.all: list[ServiceProcess] = []

    def new(self, env: dict[str, str], name: str, *args: str) -> ServiceProcess:
        service = ServiceProcess(env, self.folder / f"{name}.log", *args)
        self.all.append(service)
        return service

    async def start(self, service: ServiceProcess) -> ServiceProcess:
        # start() polls /healthz with blocking calls: keep the test's loop (stand-in,
        # proxy, clients) running meanwhile.
        return await asyncio.to_thread(service.start)

    def kill_all(self) -> None:
        for service in self.all:
            service.kill()

    def logs(self) -> str:
        return "".join(service.logs() for service in self.all)


# --------------------------------------------------------------------------------------
# the client side
# --------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (connection refused, reset, disconnected)
    problem_type: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    retry_after: float | None = None

    @property
    def in_progress(self) -> bool:
        return self.status == 409 and self.problem_type.endswith("request-in-progress")

    def label(self) -> str:
        if self.status is None:
            return "connection error"
        if self.in_progress:
            return "409 in progress"
        return str(self.status)


async def post_signup(
    http: aiohttp.ClientSession, url: str, body: Mapping[str, Any], key: str | None
) -> Answer:
    headers = {"Idempotency-Key": key} if key else {}
    try:
        async with http.post(
            f"{url}/user/signup", json=dict(body), headers=headers, timeout=REQUEST_TIMEOUT
        ) as response:
            raw = await response.read()
            data = orjson.loads(raw) if raw else {}
            retry = response.headers.get("Retry-After")
            return Answer(
                response.status,
                str(data.get("type", "")) if isinstance(data, dict) else "",
                data if isinstance(data, dict) else {},
                retry_after=float(retry) if retry else None,
            )
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        # A timeout (the service hung) is no connection error: it is not caught here.
        if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.SocketTimeoutError):
            raise
        return Answer(None, error=f"{type(exc).__name__}: {exc}")


@dataclass
class SignUpRecord:
    index: int
    email: str
    password: str
    key: str | None
    answers: list[Answer] = field(default_factory=list)

    @property
    def final(self) -> Answer | None:
        return self.answers[-1] if self.answers else None

    def body(self) -> dict[str, Any]:
        return {"email": self.email, "password": self.password, "given_name": f"F{self.index}"}


def tally(records: Iterable[SignUpRecord]) -> tuple[Counter[str], Counter[str]]:
    """(every answer by label, final answers by label)."""
    every: Counter[str] = Counter()
    final: Counter[str] = Counter()
    for record in records:
        for answer in record.answers:
            every[answer.label()] += 1
        if record.final is not None:
            final[record.final.label()] += 1
    return every, final


def assert_design_answers(records: Iterable[SignUpRecord], allow_connection_errors: bool) -> None:
    for record in records:
        for answer in record.answers:
            if answer.status is None:
                assert allow_connection_errors, f"{record.email}: {answer.error}"
                continue
            assert answer.status in DESIGN_STATUSES, (
                f"{record.email}: answer {answer.status} {answer.body} is not one of the design's"
            )
            if answer.status == 201:
                assert answer.body.get("email") == record.email, answer.body
                assert str(answer.body.get("user_id", "")), answer.body


# --------------------------------------------------------------------------------------
# the queue
# --------------------------------------------------------------------------------------


@dataclass
class Received:
    """Every message delivered to the test's queue, raw and parsed."""

    bodies: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    message_ids: list[str | None] = field(default_factory=list)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.bodies.append(message.body)
        self.message_ids.append(message.message_id)
        self.events.append(orjson.loads(message.body))

    async def consume(self, queue: AbstractQueue) -> str:
        return await queue.consume(self._on_message, no_ack=True)

    async def consume_acked(self, queue: AbstractQueue) -> str:
        """Each message acknowledged once recorded, for a queue on a broker the test
        restarts: with `no_ack` a message the broker had sent but the test had not read
        when the connection dropped is gone, which is the test's loss, not the service's.
        A redelivery of an id already recorded (the broker's own doing) is not counted
        again, so `duplicates` counts only what the publisher sent twice."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            if not (message.redelivered and message.message_id in set(self.message_ids)):
                await self._on_message(message)
            await message.ack()

        return await queue.consume(on_message)

    def ids(self) -> set[str]:
        return {str(e["id"]) for e in self.events}

    def ids_by_user(self) -> dict[str, set[str]]:
        grouped: dict[str, set[str]] = defaultdict(set)
        for event in self.events:
            grouped[str(event["data"]["user_id"])].add(str(event["id"]))
        return grouped

    def duplicates(self) -> int:
        """Deliveries beyond the first of an event id (allowed: at least once)."""
        return len(self.events) - len(self.ids())


def assert_one_event_per_account(received: Received, accounts: Mapping[str, str]) -> None:
    """`accounts`: user_id → e-mail of every account the identity provider holds."""
    grouped = received.ids_by_user()
    twice = {user: ids for user, ids in grouped.items() if len(ids) > 1}
    assert not twice, f"accounts with more than one event id: {twice}"
    orphans = set(grouped) - set(accounts)
    assert not orphans, f"events for accounts that do not exist: {sorted(orphans)}"
    silent = set(accounts) - set(grouped)
    assert not silent, f"accounts without an event: {sorted(silent)}"
    for event in received.events:
        assert event["data"]["email"] == accounts[event["data"]["user_id"]], event
        assert event["type"] == "user.new" and event["specversion"] == "1.0", event
    for message_id, event in zip(received.message_ids, received.events, strict=True):
        assert message_id == event["id"], "the AMQP message_id is the event id"


# --------------------------------------------------------------------------------------
# waiting and checking
# --------------------------------------------------------------------------------------


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    what: str,
    describe: Callable[[], object] = lambda: "",
) -> float:
    """Poll until `condition` holds; fail after `timeout` seconds. Returns seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s. {describe()}")
        await asyncio.sleep(0.1)


def standin_calls_open(standin: Auth0Standin) -> int:
    counters = standin.state.counters
    return (
        counters.create_calls
        - sum(counters.create_status.values())
        + counters.lookup_calls
        - sum(counters.lookup_status.values())
    )


async def standin_quiet(standin: Auth0Standin, timeout: float = 20.0) -> None:
    """Wait until no Management API call is in progress at the stand-in (hangs end)."""
    await wait_for(
        lambda: standin_calls_open(standin) == 0,
        timeout,
        "the stand-in finishing its calls",
        lambda: f"{standin_calls_open(standin)} still open",
    )


def accounts_of(standin: Auth0Standin) -> dict[str, str]:
    return {user_id: user["email"] for user_id, user in standin.state.users.items()}


async def reconcile(env: dict[str, str]) -> tuple[dict[str, int], str]:
    """`signup reconcile --older-than 0`, as an operator runs it: its report and output.

    In a thread: the stand-in it talks to runs on the test's own loop.
    """
    result = await asyncio.to_thread(run_cli, env, "reconcile", "--older-than", "0")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"signup reconcile failed:\n{output}"
    match = re.search(r"completed (\d+), abandoned (\d+), could not settle (\d+)", output)
    assert match, output
    report = {"completed": int(match[1]), "abandoned": int(match[2]), "failed": int(match[3])}
    return report, output


class SqliteProbe:
    """Reads the service's SQLite file from the side (WAL lets it beside the writers)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path, timeout=10) as conn:
            return conn.execute(sql).fetchall()

    def outbox_ids(self) -> set[str]:
        return {row[0] for row in self._query("SELECT event_id FROM outbox")}

    def outbox_unpublished(self) -> int:
        return int(self._query("SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0])

    def signups_by_status(self) -> dict[str, int]:
        rows = self._query("SELECT status, count(*) FROM signups GROUP BY status")
        return {str(status): int(count) for status, count in rows}

    def file_bytes(self) -> dict[str, bytes]:
        files = {}
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{self.path}{suffix}")
            if path.exists():
                files[path.name] = path.read_bytes()
        return files


def assert_no_password_leak(
    passwords: Iterable[str], texts: Mapping[str, str], blobs: Mapping[str, bytes]
) -> int:
    """No password, in any place given; returns how many places × passwords were searched."""
    searched = 0
    for password in passwords:
        encoded = password.encode()
        for name, text in texts.items():
            assert password not in text, f"a password is in {name}"
            searched += 1
        for name, blob in blobs.items():
            assert encoded not in blob, f"a password is in {name}"
            searched += 1
    return searched


class PgProbe:
    """The same questions of a PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def _query(self, sql: str) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    async def outbox_ids(self) -> set[str]:
        return {row[0] for row in await self._query("SELECT event_id FROM outbox")}

    async def outbox_unpublished(self) -> int:
        rows = await self._query("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return int(rows[0][0])

    async def signups_by_status(self) -> dict[str, int]:
        rows = await self._query("SELECT status, count(*) FROM signups GROUP BY status")
        return {str(row[0]): int(row[1]) for row in rows}

    async def dump(self) -> bytes:
        """Every sign-up and outbox row as text, for the password search."""
        rows = await self._query("SELECT s::text FROM signups s")
        rows += await self._query("SELECT o::text FROM outbox o")
        return "\n".join(str(row[0]) for row in rows).encode()
