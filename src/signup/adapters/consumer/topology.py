"""The queues of one `user.new` consumer, declared by the worker itself.

Topology of consumer NAME (prefix `signup`; every declaration is idempotent and is
made by the worker itself, again after every reconnect):

    exchange (topic, durable) ──user.new──▶ signup.NAME
        quorum queue, x-delivery-limit; a message the broker gives up on (it was
        handed out and returned too often, e.g. it crashed the worker each time) is
        dead-lettered by the broker to signup.NAME.dead
    signup.NAME.retry.<ms>   one classic durable queue per retry delay, x-message-ttl=<ms>,
        dead-lettering through the default exchange back to signup.NAME (no plugin;
        one TTL per queue keeps expiry in FIFO order)
    signup.NAME.dead         classic durable: parked messages, reason in `x-signup-reason`
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue
from pamqp.common import FieldValue

from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.consumer.connection import connect_any
from signup.domain.events import USER_NEW

DEFAULT_PREFIX = "signup"


@dataclass(frozen=True)
class Topology:
    """Names and arguments of one consumer's exchange binding and queues."""

    name: str
    exchange: str
    retry_delays_seconds: Sequence[float] = (5.0, 30.0, 300.0, 1800.0)
    delivery_limit: int = 20
    prefix: str = DEFAULT_PREFIX
    routing_key: str = USER_NEW

    @property
    def queue(self) -> str:
        return f"{self.prefix}.{self.name}"

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def retry_delays_ms(self) -> tuple[int, ...]:
        return tuple(max(0, math.ceil(seconds * 1000)) for seconds in self.retry_delays_seconds)

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.queue}.retry.{delay_ms}"

    @property
    def retry_queues(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.retry_queue(ms) for ms in self.retry_delays_ms))

    def queue_arguments(self) -> dict[str, FieldValue]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_queue,
        }

    def retry_arguments(self, delay_ms: int) -> dict[str, FieldValue]:
        return {
            "x-queue-type": "classic",
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue,
        }

    async def declare(self, channel: AbstractChannel) -> AbstractQueue:
        """Declare everything (idempotently) and return the main queue."""
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_queue(
            self.dead_queue, durable=True, arguments={"x-queue-type": "classic"}
        )
        for delay_ms in dict.fromkeys(self.retry_delays_ms):
            await channel.declare_queue(
                self.retry_queue(delay_ms), durable=True, arguments=self.retry_arguments(delay_ms)
            )
        queue = await channel.declare_queue(
            self.queue, durable=True, arguments=self.queue_arguments()
        )
        await queue.bind(exchange, self.routing_key)
        return queue


async def delete_topology(amqp_url: str, topology: Topology, *, exchange: bool = False) -> None:
    """Delete the consumer's queues (and the exchange when asked); for tests and teardown."""
    connection = await connect_any(BrokerNodes.parse(amqp_url))
    async with connection:
        channel = await connection.channel()
        for name in (topology.queue, topology.dead_queue, *topology.retry_queues):
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        if exchange:
            await channel.exchange_delete(topology.exchange)
