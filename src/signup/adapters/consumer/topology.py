"""The queues of one `user.new` consumer, declared by the worker itself.

Topology of consumer NAME (prefix `signup`; every declaration is idempotent and is
made by the worker itself, again after every reconnect). Every queue is a quorum queue,
so that a message waiting in any of them survives the loss of a cluster node (classic
mirrored queues are deprecated in RabbitMQ 3.x and gone in 4):

    exchange (topic, durable) ──user.new──▶ signup.NAME
        x-delivery-limit; a message the broker gives up on (handed out and returned too
        often, e.g. it crashed the worker each time) is dead-lettered by the broker to
        signup.NAME.dead
    signup.NAME.retry.<ms>   one per retry delay, x-message-ttl=<ms>, dead-lettering
        through the default exchange back to signup.NAME (no plugin; one TTL per queue
        keeps expiry in FIFO order; quorum queues expire messages since RabbitMQ 3.10)
    signup.NAME.dead         parked messages, reason in `x-signup-reason`

The broker's own dead-lettering (expired retries, the delivery limit) is at-least-once
(`x-dead-letter-strategy`, RabbitMQ 3.10+, which needs `x-overflow: reject-publish`):
the message leaves its queue only once the target queue confirmed it. The default,
at-most-once, drops it if the target cannot take it, e.g. during a node's loss.

Queues declared by an earlier version (classic retry and parking queues, a main queue
without the dead-letter strategy) have other arguments, and RabbitMQ refuses to declare
them again differently (PRECONDITION_FAILED). The worker then uses them as they are and
says so once each; `signup worker migrate-queues NAME` (`migration`) moves them over.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from pamqp.common import FieldValue

from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.consumer.connection import connect_any
from signup.domain.events import USER_NEW

DEFAULT_PREFIX = "signup"
# The broker dead-letters a message only once the target queue has confirmed it.
AT_LEAST_ONCE: dict[str, FieldValue] = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Topology:
    """Names and arguments of one consumer's exchange binding and queues."""

    name: str
    exchange: str
    retry_delays_seconds: Sequence[float] = (5.0, 30.0, 300.0, 1800.0)
    delivery_limit: int = 20
    prefix: str = DEFAULT_PREFIX
    # The routing keys its queue is bound with (the welcome e-mail also takes
    # `user.signup_attempted`).
    routing_keys: tuple[str, ...] = (USER_NEW,)

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

    @property
    def migrate_command(self) -> str:
        prefix = "" if self.prefix == DEFAULT_PREFIX else f" --queue-prefix {self.prefix}"
        return f"signup worker migrate-queues {self.name}{prefix}"

    def queue_arguments(self) -> dict[str, FieldValue]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_queue,
            **AT_LEAST_ONCE,
        }

    def retry_arguments(self, delay_ms: int) -> dict[str, FieldValue]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue,
            **AT_LEAST_ONCE,
        }

    def dead_arguments(self) -> dict[str, FieldValue]:
        return {"x-queue-type": "quorum"}

    def declarations(self) -> list[tuple[str, dict[str, FieldValue]]]:
        """Every queue with its arguments, in the order they are declared (the targets of
        dead-lettering first, the bound main queue last)."""
        return [
            (self.dead_queue, self.dead_arguments()),
            *(
                (self.retry_queue(ms), self.retry_arguments(ms))
                for ms in dict.fromkeys(self.retry_delays_ms)
            ),
            (self.queue, self.queue_arguments()),
        ]

    async def find_earlier(self, connection: AbstractConnection) -> dict[str, str]:
        """Declare each queue on a channel of its own; those that exist with other
        arguments (an earlier version's), each with the broker's reason."""
        earlier: dict[str, str] = {}
        probe: AbstractChannel | None = None
        try:
            for name, arguments in self.declarations():
                if probe is None or probe.is_closed:
                    probe = await connection.channel(publisher_confirms=False)
                try:
                    await probe.declare_queue(name, durable=True, arguments=arguments)
                except aiormq.exceptions.ChannelPreconditionFailed as exc:
                    earlier[name] = str(exc)
        finally:
            if probe is not None and not probe.is_closed:
                with contextlib.suppress(Exception):
                    await probe.close()
        return earlier

    async def declare(
        self, channel: AbstractChannel, connection: AbstractConnection | None = None
    ) -> AbstractQueue:
        """Declare everything (idempotently) and return the main queue.

        With `connection`, queues an earlier version declared with other arguments are
        first found (`find_earlier`), then used as they are (declared passively), each
        named once in the log with what the operator does; without it, such a queue
        closes `channel` with PRECONDITION_FAILED.
        """
        earlier = await self.find_earlier(connection) if connection is not None else {}
        for name, why in earlier.items():
            log.warning(
                "queue declared by an earlier version with other arguments: used as it is "
                "(it may not be a quorum queue, or dead-letter at most once)",
                queue=name,
                broker_said=why[:300],
                to_move_it=f"stop the workers of {self.name}, then run `{self.migrate_command}`",
            )
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue: AbstractQueue | None = None
        for name, arguments in self.declarations():
            if name in earlier:
                queue = await channel.declare_queue(name, passive=True)
            else:
                queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        assert queue is not None and queue.name == self.queue
        for routing_key in self.routing_keys:
            await queue.bind(exchange, routing_key)
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
