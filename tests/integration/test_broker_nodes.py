"""Several broker addresses against the real RabbitMQ: one dead, one alive; a node lost.

The "nodes" are the shared broker reached directly and through TCP proxies of the
test's own, so that one can be cut (refused and dropped, as a node that died).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest
import pytest_asyncio
from worker_fixtures import AMQP_URL, Broker, broker, make_event, sqlite_url, wait_for

from signup.adapters.broker import AmqpPublisher
from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.consumer import Consumer
from signup.adapters.database import create_engine
from signup.adapters.processed import SqlProcessedEvents
from signup.domain.events import UserRegistered
from signup.service_layer.ports import OutboxEntry
from signup.testing.tcp_proxy import TcpProxy

__all__ = ["broker", "sqlite_url"]  # fixtures
DEAD = "127.0.0.1:1"


class InOrder(random.Random):
    def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
        """Keep the order written, so the test knows which node comes first."""


def nodes(*hosts: str) -> BrokerNodes:
    return BrokerNodes.parse(
        ",".join([f"amqp://guest:guest@{hosts[0]}/", *hosts[1:]]), rng=InOrder()
    )


def entries(n: int) -> list[OutboxEntry]:
    now = datetime.now(UTC)
    return [OutboxEntry(str(uuid.uuid4()), "user.new", "user.new", b"{}", now) for _ in range(n)]


@pytest_asyncio.fixture
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    opened = [TcpProxy("127.0.0.1", 5672) for _ in range(2)]
    for proxy in opened:
        await proxy.open()
    try:
        yield opened
    finally:
        for proxy in opened:
            await proxy.cut()


async def _bound_queue(broker: Broker) -> aio_pika.abc.AbstractQueue:
    queue = await broker.channel.declare_queue(f"{broker.prefix}.seen", exclusive=True)
    await queue.bind(broker.exchange, "#")
    return queue


async def test_the_publisher_skips_a_dead_address_and_says_which_node_it_is_on(
    broker: Broker,
) -> None:
    queue = await _bound_queue(broker)
    publisher = AmqpPublisher(nodes(DEAD, "127.0.0.1:5672"), broker.exchange)
    try:
        assert publisher.node is None
        result = await publisher.publish(entries(3))
        assert len(result.confirmed) == 3 and not result.failed, result.failed
        assert publisher.node == "127.0.0.1:5672" and publisher.problem is None
        assert publisher.nodes == ("127.0.0.1:1", "127.0.0.1:5672")
        await wait_for(
            lambda: queue.declaration_result.message_count is not None, what="queue declared"
        )
    finally:
        await publisher.close()


async def test_every_address_dead_fails_the_batch_naming_no_password(broker: Broker) -> None:
    publisher = AmqpPublisher(nodes(DEAD, "127.0.0.1:2"), broker.exchange)
    try:
        result = await publisher.publish(entries(2))
        assert len(result.failed) == 2 and not result.confirmed
        assert "unreachable" in next(iter(result.failed.values()))
        assert publisher.node is None and publisher.problem
        assert "guest:guest" not in str(publisher.problem)
    finally:
        await publisher.close()


async def test_the_publisher_moves_to_the_next_node_when_its_node_goes(
    broker: Broker, proxies: list[TcpProxy]
) -> None:
    first, second = proxies
    publisher = AmqpPublisher(
        nodes(f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"), broker.exchange
    )
    await _bound_queue(broker)
    try:
        assert not (await publisher.publish(entries(2))).failed
        assert publisher.node == f"127.0.0.1:{first.port}"
        await first.cut()
        confirmed: list[str] = []
        for _ in range(3):  # the batch that finds the connection gone may fail; then it moves
            confirmed += (await publisher.publish(entries(2))).confirmed
            if confirmed:
                break
        assert confirmed, "publishing resumed on the next node"
        assert publisher.node == f"127.0.0.1:{second.port}"
    finally:
        await publisher.close()


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, event: UserRegistered) -> None:
        self.ids.append(event.id)


@pytest.mark.parametrize("lose_node", [False, True])
async def test_a_worker_skips_a_dead_address_and_moves_on_when_its_node_goes(
    broker: Broker, sqlite_url: str, proxies: list[TcpProxy], lose_node: bool
) -> None:
    first, second = proxies
    engine = create_engine(sqlite_url)
    handler = Recorder()
    consumer = Consumer(
        topology=broker.topology("nodes"),
        amqp_url=nodes(DEAD, f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"),
        handler=handler,
        processed=SqlProcessedEvents(engine),
        shutdown_grace_seconds=5,
        reconnect_interval=0.3,
    )
    try:
        await consumer.start()
        assert consumer.node == f"127.0.0.1:{first.port}"
        event = make_event()
        await broker.publish_event(event)
        await wait_for(lambda: handler.ids == [event.id], what="first event")
        if lose_node:
            await first.cut()
            await wait_for(lambda: consumer.stats.reconnects >= 1, timeout=20, what="reconnect")
            assert consumer.node == f"127.0.0.1:{second.port}"
            later = make_event()
            await broker.publish_event(later)
            await wait_for(lambda: later.id in handler.ids, what="event after the move")
    finally:
        await consumer.stop()
        await engine.dispose()


async def test_the_one_shot_commands_skip_a_dead_address(broker: Broker) -> None:
    from signup.adapters.consumer import list_dead_letters

    topology = broker.topology("oneshot")
    await broker.channel.declare_queue(
        topology.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    letters, total = await list_dead_letters(
        f"amqp://guest:guest@{DEAD}/,{AMQP_URL.split('@', 1)[1].rstrip('/')}", topology
    )
    assert (letters, total) == ([], 0)


async def test_a_node_that_nacks_a_whole_batch_is_left_for_the_next(
    broker: Broker, proxies: list[TcpProxy]
) -> None:
    """As a node being stopped does: here a full queue that rejects new publishes."""
    first, second = proxies
    full = await broker.channel.declare_queue(
        f"{broker.prefix}.full",
        exclusive=True,
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    await full.bind(broker.exchange, "#")
    publisher = AmqpPublisher(
        nodes(f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"), broker.exchange
    )
    try:
        refused = await publisher.publish(entries(2))
        assert set(refused.failed.values()) == {"nacked by the broker"}, refused.failed
        assert publisher.node is None, "the connection to the nacking node is dropped"
        await full.unbind(broker.exchange, "#")
        await _bound_queue(broker)
        accepted = await publisher.publish(entries(2))
        assert len(accepted.confirmed) == 2, accepted.failed
        assert publisher.node == f"127.0.0.1:{second.port}"
    finally:
        await publisher.close()
