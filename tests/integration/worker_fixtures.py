"""Helpers and fixtures for the worker tests: real RabbitMQ, SMTP, HTTP and databases.

Every test gets its own exchange and queue prefix (a uuid), so runs can repeat and run
beside a live service; everything declared is deleted at teardown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller

from signup.adapters.consumer import Consumer, Topology, delete_topology
from signup.adapters.database import create_engine, migrate
from signup.adapters.processed import SqlProcessedEvents
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.settings import Settings

AMQP_URL = os.environ.get("SIGNUP_TEST_AMQP_URL", "amqp://guest:guest@localhost:5672/")
POSTGRES_URL = os.environ.get(
    "SIGNUP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
FAST_RETRIES = (0.2, 0.4)
CRM_SECRET = "whsec_" + base64.b64encode(b"test-signing-key-0123456789abcdef").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_event(
    *,
    event_id: str | None = None,
    email: str = "ada@example.com",
    given_name: str | None = "Ada",
    family_name: str | None = "Lovelace",
    name: str = "Ada Lovelace",
) -> UserRegistered:
    now = datetime.now(UTC)
    return UserRegistered(
        id=event_id or str(uuid.uuid4()),
        source="urn:signup:test",
        time=now,
        data=UserRegisteredData(
            user_id=f"local|{uuid.uuid4().hex[:12]}",
            email=email,
            email_verified=False,
            given_name=given_name,
            family_name=family_name,
            name=name,
            created_at=now,
            identity_provider="local",
        ),
    )


async def wait_for(
    condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Broker:
    """A per-test exchange and queue prefix on the real RabbitMQ."""

    exchange: str
    prefix: str
    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    topologies: list[Topology] = field(default_factory=list)

    def topology(
        self, name: str, *, delays: tuple[float, ...] = FAST_RETRIES, delivery_limit: int = 5
    ) -> Topology:
        topology = Topology(
            name=name,
            exchange=self.exchange,
            retry_delays_seconds=delays,
            delivery_limit=delivery_limit,
            prefix=self.prefix,
        )
        self.topologies.append(topology)
        return topology

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "amqp_url": AMQP_URL,
            "exchange": self.exchange,
            "worker_retry_delays_seconds": list(FAST_RETRIES),
            "worker_delivery_limit": 5,
            "worker_prefetch": 8,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    async def publish_event(self, event: UserRegistered) -> None:
        await self.publish_raw(
            event.to_json(),
            message_id=event.id,
            content_type="application/cloudevents+json",
        )

    async def publish_raw(
        self,
        body: bytes,
        *,
        message_id: str | None = None,
        content_type: str = "application/cloudevents+json",
        headers: dict[str, Any] | None = None,
    ) -> None:
        exchange = await self.channel.get_exchange(self.exchange)
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                content_type=content_type,
                type="user.new",
                app_id="signup",
                headers=headers or {},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="user.new",
        )

    async def queue_depth(self, name: str) -> int:
        queue = await self.channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0

    async def get_all(self, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take (and ack) every message now in queue `name`."""
        queue = await self.channel.declare_queue(name, passive=True)
        taken = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[Broker]:
    tag = uuid.uuid4().hex[:10]
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    exchange = f"test.users.{tag}"
    await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    state = Broker(exchange=exchange, prefix=f"test.{tag}", connection=connection, channel=channel)
    try:
        yield state
    finally:
        await connection.close()
        for topology in state.topologies:
            await delete_topology(AMQP_URL, topology)
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup:
            await (await cleanup.channel()).exchange_delete(exchange)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'signup.db'}"
    migrate(url)
    return url


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[Consumer]:
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def runtime(
    broker: Broker,
    database_url: str,
    handler: Callable[[UserRegistered], Awaitable[None]],
    *,
    name: str = "test-consumer",
    delays: tuple[float, ...] = FAST_RETRIES,
    prefetch: int = 8,
    topology: Topology | None = None,
) -> AsyncIterator[Consumer]:
    """A started runtime with `handler` (the generic runtime, no real side effect)."""
    engine = create_engine(database_url)
    consumer = Consumer(
        topology=topology or broker.topology(name, delays=delays),
        amqp_url=AMQP_URL,
        handler=handler,
        processed=SqlProcessedEvents(engine),
        prefetch=prefetch,
        shutdown_grace_seconds=5,
        reconnect_interval=0.3,
    )
    try:
        async with running(consumer):
            yield consumer
    finally:
        await engine.dispose()


# --- a real SMTP server --------------------------------------------------------------


@dataclass
class SmtpSink:
    """Records what an aiosmtpd server received; refuses or defers recipients on demand."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> "550 …"
    defer_times: int = 0  # answer 451 to the next N RCPT commands
    rcpt_calls: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        self.rcpt_calls += 1
        if self.defer_times > 0:
            self.defer_times -= 1
            return "451 4.3.0 try again later"
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Any:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- a real HTTP receiver (the CRM) ---------------------------------------------------


def verify_standard_webhook(secret: str, headers: Any, body: bytes) -> bool:
    """An independent check of the Standard Webhooks signature (not the app's code)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return False
    payload = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1) for part in headers["webhook-signature"].split(" ")]
    return any(version == "v1" and hmac.compare_digest(sig, expected) for version, sig in offered)


@dataclass
class CrmReceiver:
    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    secret: str = CRM_SECRET

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify_standard_webhook(self.secret, request.headers, body)
        self.calls.append(
            {
                "id": request.headers.get("webhook-id"),
                "valid": valid,
                "json": orjson.loads(body),
                "content_type": request.headers.get("Content-Type"),
            }
        )
        if not valid:
            return web.Response(status=401, text="bad signature")
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@pytest_asyncio.fixture
async def crm_receiver() -> AsyncIterator[CrmReceiver]:
    receiver = CrmReceiver()
    app = web.Application()
    app.router.add_post("/contacts", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    receiver.url = f"http://127.0.0.1:{port}/contacts"
    try:
        yield receiver
    finally:
        await runner.cleanup()


# --- breaking the broker connection from the broker's side ---------------------------


def close_broker_connections(user_provided_name: str) -> int:
    """Close, broker-side, the connections the client named so; how many were closed."""
    ctl = shutil.which("rabbitmqctl")
    # The broker's own tool is part of the service this suite needs: fail, never skip.
    assert ctl is not None, "rabbitmqctl is not available to drop a connection"
    listing = subprocess.run(
        [ctl, "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listing.returncode == 0, f"rabbitmqctl cannot reach the broker: {listing.stderr[:200]}"
    # client_properties is printed as an Erlang term; the name appears in it verbatim.
    pids = [
        line.split("\t", 1)[0].strip()
        for line in listing.stdout.splitlines()
        if f'"{user_provided_name}"' in line
    ]
    for pid in pids:
        subprocess.run(
            [ctl, "-q", "close_connection", pid, "test: simulated connection loss"],
            capture_output=True,
            timeout=30,
            check=True,
        )
    return len(pids)


@contextlib.asynccontextmanager
async def worker(broker: Broker, name: str, settings: Settings) -> AsyncIterator[Consumer]:
    """Consumer NAME as `signup worker NAME` wires it (real adapters), started."""
    from signup.bootstrap import build_consumer

    broker.topology(name)  # the same names as the worker's, deleted at teardown
    async with build_consumer(name, settings, prefix=broker.prefix) as consumer:
        consumer._reconnect_interval = 0.3
        async with running(consumer):
            yield consumer
