"""The worker runtime on a real RabbitMQ: topology, parking, retries, dedupe, requeue,
graceful stop and a lost connection. The handler here is a test double; the real
side effects are in test_welcome_email.py and test_crm_sync.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiormq
import orjson
import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner
from worker_fixtures import (
    AMQP_URL,
    POSTGRES_URL,
    Broker,
    SmtpSink,
    broker,
    close_broker_connections,
    free_port,
    make_event,
    runtime,
    sqlite_url,
    wait_for,
)

from signup.adapters.consumer import (
    REASON_HEADER,
    list_dead_letters,
    requeue_dead_letters,
)
from signup.adapters.database import create_engine, migrate
from signup.adapters.processed import SqlProcessedEvents
from signup.domain.events import UserRegistered
from signup.entrypoints.worker_cli import worker_app
from signup.service_layer.failures import PermanentFailure, TransientFailure

__all__ = ["broker", "sqlite_url"]  # fixtures


class Recorder:
    """A handler that records events and fails as told."""

    def __init__(self) -> None:
        self.calls: list[UserRegistered] = []
        self.fail_times = 0
        self.failure: Exception = TransientFailure("not yet")
        self.delay = 0.0
        self.started = asyncio.Event()

    async def __call__(self, event: UserRegistered) -> None:
        self.calls.append(event)
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_times:
            self.fail_times -= 1
            raise self.failure

    def ids(self) -> list[str]:
        return [event.id for event in self.calls]


async def test_topology_is_a_bound_quorum_queue_declared_idempotently(
    broker: Broker, sqlite_url: str
) -> None:
    handler = Recorder()
    topology = broker.topology("topo")
    async with runtime(broker, sqlite_url, handler, topology=topology):
        pass
    # A second start declares the same things again without complaint.
    async with runtime(broker, sqlite_url, handler, topology=topology) as consumer:
        event = make_event()
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.processed == 1, what="processing")
    for name in (topology.dead_queue, *topology.retry_queues):
        assert await broker.queue_depth(name) == 0
    assert topology.retry_queues == (f"{topology.queue}.retry.200", f"{topology.queue}.retry.400")
    # It is a quorum queue: declaring it as classic is refused.
    probe = await broker.connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await probe.declare_queue(
            topology.queue, durable=True, arguments={"x-queue-type": "classic"}
        )


async def test_malformed_messages_are_parked_and_the_worker_goes_on(
    broker: Broker, sqlite_url: str
) -> None:
    handler = Recorder()
    async with runtime(broker, sqlite_url, handler) as consumer:
        await broker.publish_raw(b"this is not json", message_id="junk-1")
        incomplete = make_event().as_dict()
        del incomplete["data"]["email"]
        await broker.publish_raw(orjson.dumps(incomplete), headers={"x-trace": "kept"})
        other_type = make_event().as_dict() | {"type": "user.deleted"}
        await broker.publish_raw(orjson.dumps(other_type))
        good = make_event()
        await broker.publish_event(good)
        await wait_for(lambda: consumer.stats.processed == 1, what="the good event")
        await wait_for(lambda: consumer.stats.dead_lettered == 3, what="parking")
    assert handler.ids() == [good.id]

    parked = await broker.get_all(consumer.topology.dead_queue)
    reasons = {m.message_id: str(m.headers[REASON_HEADER]) for m in parked}
    assert len(parked) == 3
    assert all(reason.startswith("malformed user.new event") for reason in reasons.values())
    assert "json" in reasons["junk-1"].lower()
    assert any("data.email" in reason for reason in reasons.values())
    assert any("type" in reason for reason in reasons.values())
    kept = [m for m in parked if m.headers.get("x-trace") == "kept"]
    assert len(kept) == 1, "original headers are kept"
    assert kept[0].body == orjson.dumps(incomplete)
    assert await broker.queue_depth(consumer.topology.queue) == 0


async def test_transient_failures_are_retried_with_growing_delays(
    broker: Broker, sqlite_url: str
) -> None:
    handler = Recorder()
    handler.fail_times = 2
    async with runtime(broker, sqlite_url, handler) as consumer:
        event = make_event()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.processed == 1, what="success after retries")
        elapsed = loop.time() - started
    assert handler.ids() == [event.id] * 3
    assert consumer.stats.retried == 2
    assert consumer.stats.dead_lettered == 0
    assert elapsed >= 0.2 + 0.4 - 0.05


async def test_unexpected_exceptions_are_retried_too(broker: Broker, sqlite_url: str) -> None:
    handler = Recorder()
    handler.fail_times = 1
    handler.failure = RuntimeError("bug")
    async with runtime(broker, sqlite_url, handler) as consumer:
        await broker.publish_event(make_event())
        await wait_for(lambda: consumer.stats.processed == 1, what="success after a retry")
    assert consumer.stats.retried == 1


async def test_permanent_failure_is_parked_without_retry(broker: Broker, sqlite_url: str) -> None:
    handler = Recorder()
    handler.fail_times = 1
    handler.failure = PermanentFailure("recipient refused")
    async with runtime(broker, sqlite_url, handler) as consumer:
        event = make_event()
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="parking")
    assert handler.ids() == [event.id]
    assert consumer.stats.retried == 0
    letters, total = await list_dead_letters(AMQP_URL, consumer.topology)
    assert total == 1
    assert letters[0].event_id == event.id
    assert letters[0].reason == "recipient refused"
    assert letters[0].attempts == 1


async def test_exhausted_retries_park_and_requeue_brings_it_back(
    broker: Broker, sqlite_url: str
) -> None:
    handler = Recorder()
    handler.fail_times = 3  # first try + two retries
    handler.failure = TransientFailure("CRM answered 503")
    async with runtime(broker, sqlite_url, handler) as consumer:
        event, bystander = make_event(), make_event()
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="parking")
        assert handler.ids() == [event.id] * 3
        assert consumer.stats.retried == 2

        letters, total = await list_dead_letters(AMQP_URL, consumer.topology)
        assert total == 1
        assert letters[0].event_id == event.id
        assert letters[0].attempts == 3
        assert letters[0].reason == "gave up after 3 attempts: CRM answered 503"
        # Listing leaves them in place (a quorum queue takes them back a moment later).
        for _ in range(100):
            if await broker.queue_depth(consumer.topology.dead_queue) == 1:
                break
            await asyncio.sleep(0.05)
        assert await broker.queue_depth(consumer.topology.dead_queue) == 1

        # Park another one, then requeue only the first by its event id.
        handler.fail_times = 1
        handler.failure = PermanentFailure("no")
        await broker.publish_event(bystander)
        await wait_for(lambda: consumer.stats.dead_lettered == 2, what="second parking")

        moved = await requeue_dead_letters(AMQP_URL, consumer.topology, event_id=event.id)
        assert moved == 1
        await wait_for(lambda: consumer.stats.processed == 1, what="the requeued event")
        assert handler.ids()[-1] == event.id
        remaining, _ = await list_dead_letters(AMQP_URL, consumer.topology)
        assert [letter.event_id for letter in remaining] == [bystander.id]

        assert await requeue_dead_letters(AMQP_URL, consumer.topology) == 1
        await wait_for(lambda: consumer.stats.processed == 2, what="requeue of all")
    assert await broker.queue_depth(consumer.topology.dead_queue) == 0


async def test_duplicate_deliveries_have_one_side_effect(broker: Broker, sqlite_url: str) -> None:
    handler = Recorder()
    handler.delay = 0.1
    async with runtime(broker, sqlite_url, handler) as consumer:
        event = make_event()
        # Two copies in flight together, then a replay after it was done.
        await broker.publish_event(event)
        await broker.publish_event(event)
        await wait_for(
            lambda: consumer.stats.processed + consumer.stats.duplicates_skipped == 2,
            what="both copies",
        )
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.duplicates_skipped == 2, what="the replay")
    assert handler.ids() == [event.id]
    assert consumer.stats.processed == 1


async def test_stop_finishes_the_message_in_hand(broker: Broker, sqlite_url: str) -> None:
    handler = Recorder()
    handler.delay = 0.5
    async with runtime(broker, sqlite_url, handler) as consumer:
        await broker.publish_event(make_event())
        await asyncio.wait_for(handler.started.wait(), 10)
        # leaving the block stops the consumer while the handler is still busy
    assert consumer.stats.processed == 1
    assert consumer.in_flight == 0
    assert await broker.queue_depth(consumer.topology.queue) == 0


@dataclass
class HeldSmtpSink(SmtpSink):
    """Holds each message's DATA answer until released: the worker has a mail in hand."""

    in_hand: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_hand.set()
        await asyncio.to_thread(self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


async def test_sigterm_stops_the_worker_cleanly(
    broker: Broker, sqlite_url: str, tmp_path: Path
) -> None:
    """`signup worker welcome-email` given SIGTERM with a mail in hand stops taking
    messages, finishes and acks that one, and exits 0. The worker is a process of its own:
    the signal goes to it, never to the test runner."""
    sink = HeldSmtpSink(port=free_port())
    smtp_server = Controller(sink, hostname=sink.host, port=sink.port)
    smtp_server.start()
    topology = broker.topology("welcome-email")  # for cleanup: same names as the worker's
    env = {
        **os.environ,
        "SIGNUP_AMQP_URL": AMQP_URL,
        "SIGNUP_EXCHANGE": broker.exchange,
        "SIGNUP_DATABASE_URL": sqlite_url,
        "SIGNUP_WORKER_RETRY_DELAYS_SECONDS": ",".join(map(str, topology.retry_delays_seconds)),
        "SIGNUP_WORKER_DELIVERY_LIMIT": str(topology.delivery_limit),
        "SIGNUP_SMTP_HOST": sink.host,
        "SIGNUP_SMTP_PORT": str(sink.port),
        "SIGNUP_MAIL_FROM": "welcome@nakedcoders.test",
        "SIGNUP_LOG_FORMAT": "json",
    }
    log = tmp_path / "worker.log"
    with log.open("ab") as output:
        command = ["worker", "welcome-email", "--queue-prefix", broker.prefix]
        worker = subprocess.Popen(
            [sys.executable, "-m", "signup", *command],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_for_queue(broker, topology.queue, timeout=30)
        await broker.publish_event(make_event())
        assert await asyncio.to_thread(sink.in_hand.wait, 15), log.read_text()
        worker.send_signal(signal.SIGTERM)
        await _wait_for_log(log, "finishing messages in hand", count=1)
        assert sink.received == []  # still in hand when the worker began to stop
        sink.release.set()
        code = await asyncio.to_thread(worker.wait, 30)
    finally:
        sink.release.set()
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        smtp_server.stop()
    assert code == 0, log.read_text()
    assert len(sink.received) == 1
    assert await broker.queue_depth(topology.queue) == 0  # acked, not back in the queue


async def _wait_for_queue(broker: Broker, name: str, timeout: float = 10.0) -> None:
    """Until queue `name` has a consumer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        channel = await broker.connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
            if queue.declaration_result.consumer_count:
                return
        except aiormq.exceptions.ChannelNotFoundEntity:
            pass
        finally:
            if not channel.is_closed:
                await channel.close()
        if loop.time() > deadline:
            raise AssertionError(f"no consumer on {name}")
        await asyncio.sleep(0.05)


async def _wait_for_log(path: Path, event: str, timeout: float = 15.0, **fields: Any) -> None:
    """Until the process logging (JSON) to `path` has logged `event` with `fields`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                entry = orjson.loads(line)
                if entry.get("event") == event and fields.items() <= entry.items():
                    return
        if loop.time() > deadline:
            raise AssertionError(f"no {event!r} in {path}:\n{path.read_text()}")
        await asyncio.sleep(0.05)


async def test_a_lost_broker_connection_is_survived(broker: Broker, sqlite_url: str) -> None:
    handler = Recorder()
    async with runtime(broker, sqlite_url, handler) as consumer:
        await broker.publish_event(make_event())
        await wait_for(lambda: consumer.stats.processed == 1, what="first event")
        closed = await asyncio.to_thread(
            close_broker_connections, f"signup-worker {consumer.topology.queue}"
        )
        assert closed == 1
        await wait_for(lambda: consumer.stats.reconnects >= 1, timeout=20, what="reconnect")
        await broker.publish_event(make_event())
        await wait_for(lambda: consumer.stats.processed == 2, what="event after reconnect")


async def test_dedupe_on_postgresql(broker: Broker) -> None:
    await asyncio.to_thread(migrate, POSTGRES_URL)
    name = f"test-{uuid.uuid4().hex[:12]}"
    engine = create_engine(POSTGRES_URL)
    processed = SqlProcessedEvents(engine)
    handler = Recorder()
    event = make_event()
    try:
        marks = await asyncio.gather(*(processed.mark_processed(name, "e-1") for _ in range(5)))
        assert sorted(marks) == [False] * 4 + [True]
        assert await processed.is_processed(name, "e-1")
        async with runtime(broker, POSTGRES_URL, handler, name=name) as consumer:
            for _ in range(3):
                await broker.publish_event(event)
            await wait_for(
                lambda: consumer.stats.processed + consumer.stats.duplicates_skipped == 3,
                what="all copies",
            )
        assert handler.ids() == [event.id]
        assert await processed.is_processed(name, event.id)
    finally:
        await processed.forget(name, "e-1")
        await processed.forget(name, event.id)
        await engine.dispose()


async def test_cli_lists_and_requeues_parked_messages(
    broker: Broker, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNUP_AMQP_URL", AMQP_URL)
    monkeypatch.setenv("SIGNUP_EXCHANGE", broker.exchange)
    monkeypatch.setenv("SIGNUP_WORKER_RETRY_DELAYS_SECONDS", "0.2,0.4")
    monkeypatch.setenv("SIGNUP_WORKER_DELIVERY_LIMIT", "5")
    monkeypatch.setenv("COLUMNS", "200")
    cli = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = cli.invoke(worker_app, [*args, "--queue-prefix", broker.prefix])
        return result.exit_code, result.output

    handler = Recorder()
    handler.fail_times = 1
    handler.failure = PermanentFailure("550 mailbox unavailable")
    topology = broker.topology("welcome-email")
    async with runtime(broker, sqlite_url, handler, topology=topology) as consumer:
        event = make_event()
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="parking")

        code, output = await asyncio.to_thread(invoke, "dead-letters", "welcome-email")
        assert code == 0, output
        assert event.id in output
        assert "550 mailbox unavailable" in output
        assert f"{topology.dead_queue}: 1 parked" in output

        code, output = await asyncio.to_thread(invoke, "requeue", "welcome-email")
        assert code != 0  # neither --all nor --event-id
        code, output = await asyncio.to_thread(invoke, "dead-letters", "no-such-consumer")
        assert code != 0

        code, output = await asyncio.to_thread(
            invoke, "requeue", "welcome-email", "--event-id", event.id
        )
        assert code == 0, output
        assert "Moved 1 message" in output
        await wait_for(lambda: consumer.stats.processed == 1, what="the requeued event")

        code, output = await asyncio.to_thread(invoke, "dead-letters", "welcome-email")
        assert code == 0, output
        assert "No parked messages" in output
    assert handler.ids() == [event.id, event.id]


async def test_the_parked_and_retrying_depths_are_measured_into_metrics(
    broker: Broker, sqlite_url: str
) -> None:
    from prometheus_client import REGISTRY

    handler = Recorder()
    handler.fail_times = 2
    handler.failure = PermanentFailure("refused")
    topology = broker.topology("depths", delays=(60.0,))
    async with runtime(broker, sqlite_url, handler, topology=topology) as consumer:
        assert await consumer.measure_depths() == (0, 0)
        for _ in range(2):
            await broker.publish_event(make_event())
        await wait_for(lambda: consumer.stats.dead_lettered == 2, what="parking")
        handler.fail_times = 1
        handler.failure = TransientFailure("later")
        await broker.publish_event(make_event())
        await wait_for(lambda: consumer.stats.retried == 1, what="a retry")
        for _ in range(100):  # the broker counts a publish a moment after confirming it
            if await consumer.measure_depths() == (2, 1):
                break
            await asyncio.sleep(0.05)
        assert await consumer.measure_depths() == (2, 1)
        labels = {"consumer": topology.name}
        assert REGISTRY.get_sample_value("signup_worker_dead_letter_depth", labels) == 2
        assert REGISTRY.get_sample_value("signup_worker_retry_depth", labels) == 1
