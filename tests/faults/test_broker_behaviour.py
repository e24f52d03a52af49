"""The relay's publisher against what a real RabbitMQ does, during a stream of sign-ups.

Every test here alarms, stops, black-holes or misconfigures a RabbitMQ node of this
module's own (`RabbitNode`), never the shared broker on 5672. `signup serve` (local
provider, SQLite) signs people up throughout; a durable queue on the node, consumed by
the test, receives the events. Figures: docs/faults.md, "The publisher against the
broker's real behaviour".
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest
from aiosmtpd.controller import Controller
from faultkit import (
    Received,
    Services,
    SignUpRecord,
    SqliteProbe,
    assert_design_answers,
    common_env,
    password_for,
    post_signup,
    tally,
    wait_for,
)
from rabbit_node import RabbitNode

from signup.testing.server import free_port
from signup.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

CLIENTS = 3
RELAY = "signup-relay"  # the relay's connection name
HEARTBEAT = 4  # seconds, the URL's `heartbeat`: a silent peer is noticed within 2 of these


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    started = RabbitNode()
    try:
        started.start()
        yield started
    finally:
        started.stop()


@dataclass
class Stream:
    """Sign-ups by a few clients until `stop`; every answer kept."""

    url: str
    prefix: str
    records: list[SignUpRecord]
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    @classmethod
    def start(cls, url: str, prefix: str) -> Stream:
        stream = cls(url, prefix, [], asyncio.Event(), [])
        numbers = itertools.count()

        async def client() -> None:
            async with aiohttp.ClientSession() as http:
                while not stream.stop.is_set():
                    i = next(numbers)
                    record = SignUpRecord(i, f"{prefix}{i}@example.com", password_for(i), None)
                    stream.records.append(record)
                    record.answers.append(await post_signup(http, url, record.body(), None))

        stream.tasks = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        return stream

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        assert_design_answers(self.records, allow_connection_errors=False)
        every, _ = tally(self.records)
        assert set(every) == {"201"}, f"every sign-up succeeds: {dict(every)}"


@dataclass
class Queue:
    received: Received
    connection: aio_pika.abc.AbstractRobustConnection


@pytest.fixture
async def queue(node: RabbitNode, exchange_name: str) -> AsyncIterator[Queue]:
    """A durable queue on the node bound to the exchange; survives a restart of the app."""
    connection = await aio_pika.connect_robust(node.url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    declared = await channel.declare_queue(f"{exchange_name}-events", durable=True)
    await declared.bind(exchange, "user.new")
    received = Received()
    await received.consume_acked(declared)
    try:
        yield Queue(received, connection)
    finally:
        await connection.close()


async def readyz(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        data: dict[str, Any] = orjson.loads(await response.read())
        return data


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return lines


def told(logs: str, words: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(logs) if words in str(line.get("event", ""))]


async def delivered(queue: Queue, db: Path, timeout: float = 60.0) -> float:
    probe = SqliteProbe(db)
    return await wait_for(
        lambda: probe.outbox_unpublished() == 0 and queue.received.ids() >= probe.outbox_ids(),
        timeout,
        "every event delivered",
        lambda: (
            f"{len(queue.received.ids())} of {len(probe.outbox_ids())} received, "
            f"{probe.outbox_unpublished()} unpublished"
        ),
    )


def check_every_event(stream: Stream, queue: Queue, db: Path) -> None:
    ids = SqliteProbe(db).outbox_ids()
    assert len(ids) == len(stream.records), "one event per 201"
    assert queue.received.ids() == ids
    assert {e["data"]["email"] for e in queue.received.events} == {r.email for r in stream.records}


ALARMS = {
    # the alarm raised, then cleared (the node's own settings: the shared broker is untouched)
    "memory": (("set_vm_memory_high_watermark", "0"), ("set_vm_memory_high_watermark", "0.4")),
    "disk": (("set_disk_free_limit", "100000GB"), ("set_disk_free_limit", "50MB")),
}


@pytest.mark.parametrize("alarm", list(ALARMS))
async def test_an_alarm_pauses_publishing_without_reconnecting_or_losing_a_confirm(
    tmp_path: Path,
    node: RabbitNode,
    exchange_name: str,
    queue: Queue,
    services: Services,
    alarm: str,
) -> None:
    raise_it, clear_it = ALARMS[alarm]
    db = tmp_path / "signup.db"
    env = common_env(f"sqlite+aiosqlite:///{db}", exchange_name, SIGNUP_AMQP_URL=node.url)
    earlier = node.connections_named(RELAY)  # the node serves the whole module
    service = await services.start(services.new(env, "serve"))
    stream = Stream.start(service.url, "alarm")
    try:
        await wait_for(lambda: len(queue.received.ids()) > 0, 30, "a first event")
        node.ctl(*raise_it)
        try:
            noticed = await wait_for(
                lambda: _blocked(service.ops_url), 15, "readyz reporting the block"
            )
            at_block = len(queue.received.ids())
            await asyncio.sleep(10)  # the alarm's length: the fault itself
            during = len(queue.received.ids()) - at_block
            held = SqliteProbe(db).outbox_unpublished()
            report = await readyz(service.ops_url)
        finally:
            node.ctl(*clear_it)
        await asyncio.sleep(2)
    finally:
        await stream.finish()
    waited = await delivered(queue, tmp_path / "signup.db")
    logs = services.logs()
    print(
        f"\n{alarm} alarm 10 s: {len(stream.records)} sign-ups, all 201; block reported by "
        f"/readyz {noticed:.1f} s after the alarm ({report.get('broker_problem')}); "
        f"{during} events arrived while blocked, {held} held in the outbox at its end; "
        f"all delivered {waited:.1f} s after the stream; relay connections "
        f"{node.connections_named(RELAY) - earlier}; deliveries {len(queue.received.events)} for "
        f"{len(queue.received.ids())} ids"
    )
    assert held > 0, "sign-ups made during the alarm wait in the outbox"
    assert report["broker"] == "connected" and "blocked" in report["broker_problem"]
    reconnected = node.connections_named(RELAY) - earlier - 1
    assert reconnected == 0, "no reconnect: the relay waited out the block"
    assert not told(logs, "broker not reachable"), "a block is not an outage"
    assert told(logs, "broker blocked publishing") and told(logs, "broker unblocked")
    assert queue.received.duplicates() == 0, "no confirm lost, so nothing sent twice"
    check_every_event(stream, queue, db)


async def _blocked(url: str) -> bool:
    return "blocked" in str((await readyz(url)).get("broker_problem", ""))


async def _disconnected(url: str) -> bool:
    return (await readyz(url))["broker"] == "disconnected"


class _MailSink:
    def __init__(self) -> None:
        self.recipients: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients += envelope.rcpt_tos
        return "250 Message accepted"


async def test_a_silent_peer_is_noticed_within_two_heartbeats_and_nothing_is_lost(
    tmp_path: Path, node: RabbitNode, exchange_name: str, queue: Queue, services: Services
) -> None:
    db = tmp_path / "signup.db"
    proxy = TcpProxy("127.0.0.1", node.port)
    await proxy.open()
    sink = _MailSink()
    mail = Controller(sink, hostname="127.0.0.1", port=free_port())
    mail.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat={HEARTBEAT}"
    env = common_env(f"sqlite+aiosqlite:///{db}", exchange_name, SIGNUP_AMQP_URL=url)
    worker_log = (tmp_path / "worker.log").open("wb")
    worker: subprocess.Popen[bytes] | None = None
    try:
        earlier = node.connections_named(RELAY)  # the node serves the whole module
        service = await services.start(services.new(env, "serve"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "signup", "worker", "welcome-email"],
            env={
                **os.environ,
                **env,
                "SIGNUP_SMTP_HOST": "127.0.0.1",
                "SIGNUP_SMTP_PORT": str(mail.port),
                "SIGNUP_MAIL_FROM": "welcome@example.com",
            },
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        # Its queue bound before the first sign-up, or the first events pass it by.
        await wait_for(
            lambda: "signup.welcome-email\t" in node.ctl("list_queues", "name", "consumers"),
            30,
            "the worker's queue",
        )
        stream = Stream.start(service.url, "hole")
        try:
            await wait_for(lambda: len(sink.recipients) > 0, 30, "a first welcome e-mail")
            proxy.black_hole()
            noticed = await wait_for(
                lambda: _disconnected(service.ops_url), 6 * HEARTBEAT, "the relay noticing"
            )
            await proxy.open()  # the network heals: new connections go through
            await asyncio.sleep(2)
        finally:
            await stream.finish()
        waited = await delivered(queue, db)
        emails = {r.email for r in stream.records}
        mailed = await wait_for(
            lambda: set(sink.recipients) >= emails,
            60,
            "a welcome e-mail for every sign-up (the worker reconnected)",
            lambda: (
                f"{len(set(sink.recipients) & emails)} of {len(emails)}; "
                + node.ctl("list_queues", "name", "messages_ready", "messages_unacknowledged")
            ),
        )
        assert worker.poll() is None, "the worker survived the black hole"
    finally:
        if worker is not None:
            worker.kill()
            worker.wait(10)
        worker_log.close()
        mail.stop()
        await proxy.cut()
    print(
        f"\nblack hole (heartbeat {HEARTBEAT} s): {len(stream.records)} sign-ups, all 201; "
        f"the relay noticed after {noticed:.1f} s; every event delivered {waited:.1f} s "
        f"after the stream, every e-mail {mailed:.1f} s later; {proxy.swallowed} bytes "
        f"swallowed; relay connections {node.connections_named(RELAY) - earlier}"
    )
    assert noticed <= 2 * HEARTBEAT, f"noticed after {noticed:.1f} s"
    check_every_event(stream, queue, db)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    ("url_of", "cause"),
    [
        (lambda port: f"amqp://guest:not-the-password@127.0.0.1:{port}/", "ACCESS_REFUSED"),
        (lambda port: f"amqp://guest:guest@127.0.0.1:{port}/no-such-vhost", "NOT_ALLOWED"),
    ],
    ids=["credentials", "vhost"],
)
async def test_a_refused_login_is_said_once_backed_off_and_reported_by_readyz(
    tmp_path: Path,
    node: RabbitNode,
    exchange_name: str,
    services: Services,
    url_of: Any,
    cause: str,
) -> None:
    db = tmp_path / "signup.db"
    env = common_env(f"sqlite+aiosqlite:///{db}", exchange_name, SIGNUP_AMQP_URL=url_of(node.port))
    service = await services.start(services.new(env, "serve"))
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            record = SignUpRecord(i, f"refused{i}@example.com", password_for(i), None)
            assert (await post_signup(http, service.url, record.body(), None)).status == 201
    assert service.process is not None
    await asyncio.sleep(3)  # past the first tries: the backoff grows to its ceiling
    before, started = cpu_seconds(service.process.pid), time.monotonic()
    await asyncio.sleep(5)  # the window the CPU is measured over
    cpu = (cpu_seconds(service.process.pid) - before) / (time.monotonic() - started)
    report = await readyz(service.ops_url)
    lines = told(services.logs(), "broker not reachable")
    print(
        f"\n{cause}: {len(lines)} log line(s): {lines[0].get('error') if lines else None}; "
        f"CPU {cpu:.1%} of a core; readyz {report}; "
        f"{SqliteProbe(db).outbox_unpublished()} events held"
    )
    assert len(lines) == 1 and cause in lines[0]["error"], lines
    assert cpu < 0.05, f"CPU {cpu:.1%} of a core: a busy loop"
    assert report["broker"] == "disconnected" and cause in report["broker_problem"], report
    assert SqliteProbe(db).outbox_unpublished() == 3
    # The URL's password is in neither the logs nor /readyz (which the public port serves).
    assert "not-the-password" not in services.logs() + str(report)


async def test_a_broker_restart_loses_no_event_and_duplicates_only_unconfirmed_ones(
    tmp_path: Path, node: RabbitNode, exchange_name: str, queue: Queue, services: Services
) -> None:
    db = tmp_path / "signup.db"
    env = common_env(f"sqlite+aiosqlite:///{db}", exchange_name, SIGNUP_AMQP_URL=node.url)
    earlier = node.connections_named(RELAY)  # the node serves the whole module
    service = await services.start(services.new(env, "serve"))
    stream = Stream.start(service.url, "restart")
    try:
        await wait_for(lambda: len(queue.received.ids()) > 0, 30, "a first event")
        node.ctl("stop_app")
        try:
            await asyncio.sleep(4)  # the outage's length: the fault itself
        finally:
            node.ctl("start_app")
        await asyncio.sleep(2)
    finally:
        await stream.finish()
    waited = await delivered(queue, db)
    async with aiohttp.ClientSession() as http, http.get(f"{service.ops_url}/metrics") as r:
        metrics = await r.text()
    match = re.search(r'signup_publishes_total\{result="failed"\} (\d+)', metrics)
    failed = int(float(match[1])) if match else 0
    duplicates = queue.received.duplicates()
    print(
        f"\nstop_app 4 s: {len(stream.records)} sign-ups, all 201; all delivered "
        f"{waited:.1f} s after the stream; {duplicates} duplicate deliveries, "
        f"{failed} publishes unconfirmed (and sent again); relay connections "
        f"{node.connections_named(RELAY) - earlier}"
    )
    assert duplicates <= failed, "a duplicate is only an event sent again for want of a confirm"
    check_every_event(stream, queue, db)


async def test_the_exchange_deleted_under_the_relay_is_said_and_declared_again(
    tmp_path: Path, node: RabbitNode, exchange_name: str, queue: Queue, services: Services
) -> None:
    db = tmp_path / "signup.db"
    env = common_env(f"sqlite+aiosqlite:///{db}", exchange_name, SIGNUP_AMQP_URL=node.url)
    service = await services.start(services.new(env, "serve"))
    stream = Stream.start(service.url, "gone")
    try:
        await wait_for(lambda: len(queue.received.ids()) > 0, 30, "a first event")
        admin = await aio_pika.connect(node.url)  # not robust: a 404 closes its channel
        try:
            channel = await admin.channel()
            await channel.exchange_delete(exchange_name)
            await channel.close()

            async def rebound() -> bool:
                # The binding went with the exchange: bind again once the relay declared it.
                probe = await admin.channel()
                try:
                    exchange = await probe.get_exchange(exchange_name, ensure=True)
                except aio_pika.exceptions.ChannelClosed:
                    return False
                events = await probe.get_queue(f"{exchange_name}-events")
                await events.bind(exchange, "user.new")
                await probe.close()
                return True

            again = await wait_for(rebound, 30, "the relay declaring the exchange again")
        finally:
            await admin.close()
        await asyncio.sleep(2)
    finally:
        await stream.finish()
    waited = await delivered(queue, db)
    errors = told(services.logs(), "the exchange is gone")
    print(
        f"\nexchange deleted: {len(stream.records)} sign-ups, all 201; declared again "
        f"within {again:.1f} s; error said {len(errors)} time(s): "
        f"{errors[0].get('error') if errors else None}; all delivered {waited:.1f} s after"
    )
    assert errors and "NOT_FOUND" in errors[0]["error"]
    check_every_event(stream, queue, db)
