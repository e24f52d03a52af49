"""`signup worker migrate-queues NAME`: move a consumer's queues declared by an earlier
version (other arguments: classic retry and parking queues, a main queue without
at-least-once dead-lettering) over to the current declaration, keeping every message.

RabbitMQ cannot change a queue's arguments, so each such queue is emptied into a
holding queue (`<queue>.migrating`, quorum), deleted, declared again as `Topology`
declares it, and filled back. The main queue's holding queue is bound to the exchange
before the main queue is unbound, so events published meanwhile are not lost (some
arrive twice, with the same event id, which the workers skip). Every move is published
with a confirm before the original is acknowledged. The workers of the consumer must be
stopped: the command refuses while the main queue has a consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.consumer.connection import connect_any
from signup.adapters.consumer.messages import copy_message
from signup.adapters.consumer.topology import Topology


class WorkersStillRunning(RuntimeError):
    pass


@dataclass
class Migration:
    """What was found and done: queue → messages moved (absent: already current)."""

    moved: dict[str, int] = field(default_factory=dict)
    current: list[str] = field(default_factory=list)


async def _move_all(channel: AbstractChannel, source: AbstractQueue, target: str) -> int:
    moved = 0
    while (message := await source.get(no_ack=False, fail=False)) is not None:
        await channel.default_exchange.publish(
            copy_message(message, dict(message.headers)), routing_key=target, mandatory=True
        )
        await message.ack()
        moved += 1
    return moved


async def _delete_empty(channel: AbstractChannel, name: str) -> None:
    """Delete queue `name` if it holds nothing (quorum queues refuse `if_empty`)."""
    queue = await channel.declare_queue(name, passive=True)
    if left := queue.declaration_result.message_count:
        raise RuntimeError(f"{name} still holds {left} message(s): nothing deleted; run again")
    await queue.delete(if_unused=False, if_empty=False)


async def migrate_queues(amqp_url: str, topology: Topology) -> Migration:
    connection = await connect_any(BrokerNodes.parse(amqp_url))
    result = Migration()
    async with connection:
        earlier = await topology.find_earlier(connection)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        if topology.queue in earlier:
            main = await channel.declare_queue(topology.queue, passive=True)
            if main.declaration_result.consumer_count:
                raise WorkersStillRunning(
                    f"{topology.queue} has {main.declaration_result.consumer_count} "
                    f"consumer(s): stop the workers of {topology.name} first"
                )
        for name, arguments in topology.declarations():
            if name not in earlier:
                result.current.append(name)
                continue
            is_main = name == topology.queue
            holding = await channel.declare_queue(
                f"{name}.migrating", durable=True, arguments={"x-queue-type": "quorum"}
            )
            old = await channel.declare_queue(name, passive=True)
            if is_main:  # new events go on arriving in the holding queue
                for key in topology.routing_keys:
                    await holding.bind(exchange, key)
                    await old.unbind(exchange, key)
            moved = await _move_all(channel, old, holding.name)
            await _delete_empty(channel, name)
            # A new channel for the queue declared again: RabbitMQ 3.10's channel keeps
            # the deleted queue's type and fails (INTERNAL_ERROR) publishing to the new one.
            await channel.close()
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            new = await channel.declare_queue(name, durable=True, arguments=arguments)
            holding = await channel.declare_queue(holding.name, passive=True)
            if is_main:
                for key in topology.routing_keys:
                    await new.bind(topology.exchange, key)
                    await holding.unbind(topology.exchange, key)
            await _move_all(channel, holding, name)
            await _delete_empty(channel, holding.name)
            result.moved[name] = moved
    return result
