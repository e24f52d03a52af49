"""The relay's AMQP connection against a real RabbitMQ: refusals fail a batch, never hang it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aio_pika

from signup.adapters.broker import AmqpPublisher
from signup.service_layer.ports import OutboxEntry


def entries(n: int) -> list[OutboxEntry]:
    now = datetime.now(UTC)
    return [OutboxEntry(str(uuid.uuid4()), "user.new", "user.new", b"{}", now) for _ in range(n)]


async def test_an_exchange_of_another_kind_fails_the_batch_and_the_next_batch_reconnects(
    amqp_url: str, exchange_name: str
) -> None:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    clash = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.DIRECT)
    publisher = AmqpPublisher(amqp_url, exchange_name, confirm_timeout=5)
    try:
        refused = await publisher.publish(entries(3))
        assert refused.confirmed == [] and len(refused.failed) == 3
        assert all("406" in reason for reason in refused.failed.values()), refused.failed
        assert not publisher.connected
        await clash.delete()
        queue = await channel.declare_queue(f"{exchange_name}.q", exclusive=True)
        await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        await queue.bind(exchange_name, "#")
        accepted = await publisher.publish(entries(3))
        assert len(accepted.confirmed) == 3 and not accepted.failed
    finally:
        await publisher.close()
        await channel.exchange_delete(exchange_name)
        await connection.close()


async def test_a_broker_that_is_not_there_fails_the_batch_quickly(exchange_name: str) -> None:
    publisher = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/", exchange_name)
    result = await publisher.publish(entries(2))
    assert len(result.failed) == 2 and "unreachable" in next(iter(result.failed.values()))
    await publisher.close()
