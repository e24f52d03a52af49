"""The publisher (`signup.adapters.broker`) against a scripted broker.

`ScriptedBroker` is a TCP server that speaks just enough AMQP 0-9-1 through pamqp (the
codec under aiormq) to let the publisher connect, then answers each publish as the test
scripts it: ack, nack, return, block, close the channel, or nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import pytest
from pamqp import commands as spec
from pamqp import frame as codec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from signup.adapters.broker import RETURNED, AmqpPublisher, _Link
from signup.service_layer.ports import OutboxEntry

Publish = tuple[int, spec.Basic.Publish, ContentHeader]


class ScriptedBroker:
    def __init__(self) -> None:
        self.connections = 0
        self.declares = 0
        self.client_properties: dict[str, Any] = {}
        self.heartbeat = 0
        self.refuse_login = False
        self.silent = False  # after the handshake: read everything, answer nothing
        self.published: list[Publish] = []
        self.answer: Callable[[ScriptedBroker, Publish], None] = ScriptedBroker.ack
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"amqp://guest:guest@127.0.0.1:{port}/?heartbeat={self.heartbeat}"

    def send(self, channel: int, value: Any) -> None:
        assert self.writer is not None
        self.writer.write(codec.marshal(value, channel))

    def ack(self, publish: Publish) -> None:
        self.send(1, spec.Basic.Ack(delivery_tag=publish[0]))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writer = writer
        await reader.readexactly(8)  # the protocol header
        self.send(
            0,
            spec.Connection.Start(
                server_properties={
                    "capabilities": {"publisher_confirms": True, "basic.nack": True}
                },
                mechanisms="PLAIN",
                locales="en_US",
            ),
        )
        tag, publishing = 0, None
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(7)
                rest = await reader.readexactly(int.from_bytes(head[3:7], "big") + 1)
                _, channel, value = codec.unmarshal(head + rest)
                if self.silent:
                    continue
                match value:
                    case spec.Connection.StartOk():
                        self.client_properties = dict(value.client_properties)
                        if self.refuse_login:
                            self.send(
                                0, spec.Connection.Close(403, "ACCESS_REFUSED - scripted", 0, 0)
                            )
                        else:
                            self.send(0, spec.Connection.Tune(2047, 131072, self.heartbeat))
                    case spec.Connection.Open():
                        self.send(0, spec.Connection.OpenOk())
                    case spec.Channel.Open():
                        self.send(channel, spec.Channel.OpenOk())
                    case spec.Confirm.Select():
                        self.send(channel, spec.Confirm.SelectOk())
                    case spec.Exchange.Declare():
                        self.declares += 1
                        self.send(channel, spec.Exchange.DeclareOk())
                    case spec.Basic.Publish():
                        tag += 1
                        publishing = (tag, value)
                    case ContentHeader() if publishing is not None:
                        publish = (*publishing, value)
                        self.published.append(publish)
                        self.answer(self, publish)
                    case spec.Channel.Close():
                        self.send(channel, spec.Channel.CloseOk())
                    case spec.Connection.Close():
                        self.send(0, spec.Connection.CloseOk())
                    case ContentBody() | Heartbeat() | spec.Connection.TuneOk():
                        pass
                    case _:
                        pass


@pytest.fixture
async def broker() -> AsyncIterator[ScriptedBroker]:
    scripted = ScriptedBroker()
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    try:
        yield scripted
    finally:
        if scripted.writer is not None:
            scripted.writer.transport.abort()
        scripted.server.close()


def entries(count: int, routing_key: str = "user.new") -> list[OutboxEntry]:
    return [
        OutboxEntry(
            event_id=f"event-{i}",
            routing_key=routing_key,
            event_type="user.new",
            payload=b'{"id": "%d"}' % i,
            created_at=datetime(2026, 12, 5, tzinfo=UTC),
        )
        for i in range(count)
    ]


async def test_it_advertises_blocking_and_authentication_failure_close(
    broker: ScriptedBroker,
) -> None:
    publisher = AmqpPublisher(broker.url, "users")
    try:
        result = await publisher.publish(entries(2))
    finally:
        await publisher.close()
    assert result.confirmed == ["event-0", "event-1"] and not result.failed
    capabilities = broker.client_properties["capabilities"]
    assert capabilities["connection.blocked"] is True
    assert capabilities["authentication_failure_close"] is True
    assert broker.client_properties["connection_name"] == "signup-relay"
    header = broker.published[0][2]
    assert header.properties.delivery_mode == 2 and header.properties.message_id == "event-0"
    assert broker.published[0][1].mandatory is True


async def test_a_blocked_connection_outlasts_the_confirm_timeout_without_reconnecting(
    broker: ScriptedBroker,
) -> None:
    held: list[Publish] = []

    def block_and_hold(scripted: ScriptedBroker, publish: Publish) -> None:
        if not held:
            scripted.send(0, spec.Connection.Blocked(reason="low on memory"))
        held.append(publish)

    broker.answer = block_and_hold
    publisher = AmqpPublisher(broker.url, "users", confirm_timeout=0.2)
    try:
        publishing = asyncio.create_task(publisher.publish(entries(3)))
        while publisher.problem is None or "blocked" not in publisher.problem:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.6)  # three confirm timeouts: none may fire while blocked
        assert not publishing.done() and publisher.connected
        broker.send(0, spec.Connection.Unblocked())
        for publish in held:
            broker.ack(publish)
        result = await publishing
        assert publisher.problem is None
    finally:
        await publisher.close()
    assert result.confirmed == ["event-0", "event-1", "event-2"]
    assert broker.connections == 1


async def test_a_return_a_nack_and_an_unencodable_entry_fail_only_their_own(
    broker: ScriptedBroker,
) -> None:
    def answer(scripted: ScriptedBroker, publish: Publish) -> None:
        tag, method, header = publish
        if header.properties.message_id == "event-1":
            scripted.send(1, spec.Basic.Return(312, "NO_ROUTE", method.exchange, "user.new"))
            scripted.send(1, header)
            scripted.send(1, ContentBody(b'{"id": "1"}'))
        if header.properties.message_id == "event-2":
            scripted.send(1, spec.Basic.Nack(delivery_tag=tag))
        else:
            scripted.ack(publish)

    broker.answer = answer
    publisher = AmqpPublisher(broker.url, "users")
    batch = entries(4)
    batch[3] = OutboxEntry("event-3", "k" * 256, "user.new", b"{}", batch[0].created_at)
    try:
        result = await publisher.publish(batch)
        # The unencodable one took no delivery tag: the next batch's acks settle its own.
        later = await publisher.publish(entries(6)[5:])
    finally:
        await publisher.close()
    assert result.confirmed == ["event-0"]
    assert result.failed["event-1"] == RETURNED
    assert result.failed["event-2"] == "nacked by the broker"
    assert "event-3" in result.failed
    assert [p[0] for p in broker.published] == [1, 2, 3, 4]
    assert later.confirmed == ["event-5"]


async def test_a_deleted_exchange_fails_the_batch_and_the_next_one_declares_it_again(
    broker: ScriptedBroker,
) -> None:
    def closed(scripted: ScriptedBroker, publish: Publish) -> None:
        scripted.send(1, spec.Channel.Close(404, "NOT_FOUND - no exchange 'users'", 60, 40))

    broker.answer = closed
    publisher = AmqpPublisher(broker.url, "users")
    try:
        failed = await publisher.publish(entries(2))
        broker.answer = ScriptedBroker.ack
        again = await publisher.publish(entries(2))
    finally:
        await publisher.close()
    assert all("NOT_FOUND" in why for why in failed.failed.values()), failed.failed
    assert again.confirmed == ["event-0", "event-1"]
    assert broker.declares == 2


async def test_a_refused_login_is_named_in_the_failure_and_the_problem(
    broker: ScriptedBroker,
) -> None:
    broker.refuse_login = True
    publisher = AmqpPublisher(broker.url, "users")
    try:
        result = await publisher.publish(entries(1))
    finally:
        await publisher.close()
    assert "wrong credentials (ACCESS_REFUSED)" in result.failed["event-0"]
    assert publisher.problem is not None and "ACCESS_REFUSED" in publisher.problem
    assert not publisher.connected


async def test_a_silent_broker_is_dropped_after_its_heartbeat_timeout(
    broker: ScriptedBroker,
) -> None:
    broker.heartbeat = 1
    publisher = AmqpPublisher(broker.url, "users")
    try:
        await publisher._ready()
        broker.silent = True  # no more heartbeats (nor anything else) from the broker
        async with asyncio.timeout(10):
            while publisher.connected:
                await asyncio.sleep(0.05)
    finally:
        await publisher.close()


URLS = [
    "amqp://guest:guest@broker.example/",
    "amqp://u%40x:p%2Fw@broker.example:5673/staging?heartbeat=5&timeout=3&name=relay",
    "amqps://u:p@broker.example/%2F?cafile=/etc/ssl/ca.pem&certfile=/c.pem&keyfile=/k.pem",
    "amqps://u:p@broker.example:5676/vh?no_verify_ssl=1&heartbeat=0",
]


@pytest.mark.parametrize("url", URLS)
async def test_the_relay_reads_an_amqp_url_as_the_workers_aio_pika_does(url: str) -> None:
    """Both end in aiormq's URL rules: the relay's `_Link` is an aiormq connection, and
    aio-pika hands its URL (options kept) to aiormq."""
    relay = _Link(url)
    worker_url = aio_pika.connection.make_url(url)
    worker = aiormq.Connection(worker_url)

    def seen(connection: aiormq.Connection) -> tuple[Any, ...]:
        certs = connection.ssl_certs
        return (
            connection.url.scheme,
            connection.url.host,
            connection.url.port,
            connection.url.user,
            connection.url.password,
            connection.vhost,
            connection.heartbeat_timeout,
            connection.timeout,
            (certs.cafile, certs.cert, certs.key, certs.verify),
            type(connection._transport_factory).__name__,
        )

    assert seen(relay) == seen(worker)
    if url.startswith("amqps"):
        assert type(relay._transport_factory).__name__ == "TLSTransportFactory"
        assert relay.ssl_certs.verify is ("no_verify_ssl" not in url)
