"""Queues declared by the previous version (classic retry and parking queues, a main
queue without at-least-once dead-lettering) against the real RabbitMQ: the worker runs
on them as they are and names each once; `migrate-queues` moves them over, keeping every
message; it refuses while a worker consumes."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner
from worker_fixtures import AMQP_URL, Broker, broker, make_event, runtime, sqlite_url, wait_for

from signup.adapters.consumer import Topology, WorkersStillRunning, migrate_queues
from signup.entrypoints.worker_cli import worker_app

__all__ = ["broker", "sqlite_url"]  # fixtures
SLOW = (60.0, 120.0)  # retries that wait while the test looks at them


def previous_version_arguments(topology: Topology) -> dict[str, dict[str, object]]:
    """What the version before issue 20 declared."""
    declared: dict[str, dict[str, object]] = {topology.dead_queue: {"x-queue-type": "classic"}}
    for ms in topology.retry_delays_ms:
        declared[topology.retry_queue(ms)] = {
            "x-queue-type": "classic",
            "x-message-ttl": ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": topology.queue,
        }
    declared[topology.queue] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": topology.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": topology.dead_queue,
    }
    return declared


async def declare_previous_version(broker: Broker, topology: Topology) -> None:
    for name, arguments in previous_version_arguments(topology).items():
        await broker.channel.declare_queue(name, durable=True, arguments=arguments)  # type: ignore[arg-type]
    main = await broker.channel.declare_queue(topology.queue, passive=True)
    for key in topology.routing_keys:
        await main.bind(broker.exchange, key)


async def park(broker: Broker, queue: str, count: int) -> set[str]:
    ids = set()
    for _ in range(count):
        event = make_event()
        await broker.channel.default_exchange.publish(
            aio_pika.Message(event.to_json(), message_id=event.id, delivery_mode=2),
            routing_key=queue,
        )
        ids.add(event.id)
    return ids


async def ids_in(broker: Broker, queue: str) -> set[str]:
    return {str(m.message_id) for m in await broker.get_all(queue)}


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, event: object) -> None:
        self.ids.append(event.id)  # type: ignore[attr-defined]


async def test_the_worker_runs_on_the_previous_queues_and_migration_keeps_every_message(
    broker: Broker, sqlite_url: str
) -> None:
    topology = broker.topology("migrate", delays=SLOW)
    await declare_previous_version(broker, topology)
    assert set(await topology.find_earlier(broker.connection)) == {
        topology.queue,
        topology.dead_queue,
        *topology.retry_queues,
    }
    parked = await park(broker, topology.dead_queue, 3)
    waiting = await park(broker, topology.retry_queue(60_000), 2)

    handler = Recorder()
    with capture_logs() as logs:
        async with runtime(broker, sqlite_url, handler, topology=topology) as consumer:
            event = make_event()
            await broker.publish_event(event)
            await wait_for(lambda: handler.ids == [event.id], what="processed on old queues")
            with pytest.raises(WorkersStillRunning):
                await migrate_queues(AMQP_URL, topology)
            assert consumer.stats.processed == 1
    said = [e for e in logs if str(e["event"]).startswith("queue declared by an earlier version")]
    assert sorted(e["queue"] for e in said) == sorted(
        [topology.queue, topology.dead_queue, *topology.retry_queues]
    ), "each old queue named once"
    assert all(
        f"signup worker migrate-queues migrate --queue-prefix {broker.prefix}" in e["to_move_it"]
        for e in said
    )
    assert any("x-queue-type" in e["broker_said"] for e in said)

    unconsumed = await park(broker, topology.queue, 2)  # waiting in the main queue
    done = await migrate_queues(AMQP_URL, topology)
    assert done.moved == {
        topology.dead_queue: 3,
        topology.retry_queue(60_000): 2,
        topology.retry_queue(120_000): 0,
        topology.queue: 2,
    }
    assert await topology.find_earlier(broker.connection) == {}, "every queue is current now"
    again = await migrate_queues(AMQP_URL, topology)
    assert again.moved == {} and len(again.current) == 4
    for name in (topology.dead_queue, *topology.retry_queues, topology.queue):
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            probe = await broker.connection.channel()
            await probe.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
    assert await ids_in(broker, topology.dead_queue) == parked
    assert await ids_in(broker, topology.retry_queue(60_000)) == waiting
    # The main queue is bound again: a new event reaches it.
    later = make_event()
    await broker.publish_event(later)
    await wait_for(
        lambda: True, what="publish settles"
    )  # publish_event is confirmed by the channel
    assert await ids_in(broker, topology.queue) == unconsumed | {later.id}


async def test_the_command_says_when_everything_is_current(broker: Broker) -> None:
    topology = broker.topology("crm-sync", delivery_limit=20)
    env = {
        "SIGNUP_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/,"
        + AMQP_URL.split("@", 1)[1].rstrip("/"),
        "SIGNUP_EXCHANGE": broker.exchange,
        "SIGNUP_WORKER_RETRY_DELAYS_SECONDS": ",".join(map(str, topology.retry_delays_seconds)),
    }
    runner = CliRunner()
    first = await asyncio.to_thread(
        runner.invoke,
        worker_app,
        ["migrate-queues", "crm-sync", "--queue-prefix", broker.prefix],
        env=env,
    )
    assert first.exit_code == 0, first.output
    assert "already current" in first.output, first.output
    probe = await broker.connection.channel()  # the command declared the queues: current
    assert await topology.find_earlier(broker.connection) == {}
    await probe.close()
