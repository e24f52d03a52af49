"""Publishing outbox entries to RabbitMQ: persistent, confirmed, mandatory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import PublishError
from pamqp.commands import Basic

from signup.adapters.repository import OutboxEntry

log = structlog.get_logger(__name__)
CONTENT_TYPE = "application/cloudevents+json"
APP_ID = "signup"


@dataclass
class PublishResult:
    confirmed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class EventPublisher(Protocol):
    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        """Publish all entries at once; an id is in `confirmed` only after the broker's ack."""
        ...

    @property
    def connected(self) -> bool: ...

    async def close(self) -> None: ...


def message_for(entry: OutboxEntry) -> aio_pika.Message:
    return aio_pika.Message(
        body=entry.payload,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=entry.event_id,
        content_type=CONTENT_TYPE,
        type=entry.event_type,
        timestamp=entry.created_at,
        app_id=APP_ID,
    )


class AmqpPublisher:
    """One robust connection and confirm channel; reconnects by itself after an outage."""

    def __init__(self, url: str, exchange: str, *, confirm_timeout: float = 10.0) -> None:
        self._url = url
        self._exchange_name = exchange
        self._timeout = confirm_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and (self._channel is not None and not self._channel.is_closed)
        )

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if self._exchange is None:
                connection = await aio_pika.connect_robust(
                    self._url, client_properties={"connection_name": "signup-relay"}, timeout=10
                )
                try:
                    channel = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    exchange = await channel.declare_exchange(
                        self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                except BaseException:
                    await connection.close()
                    raise
                self._connection, self._channel, self._exchange = connection, channel, exchange
            return self._exchange

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        result = PublishResult()
        if not entries:
            return result
        try:
            exchange = await self._ready()
        except Exception as exc:
            reason = f"broker unreachable: {type(exc).__name__}"
            result.failed = {e.event_id: reason for e in entries}
            return result
        outcomes = await asyncio.gather(
            *(
                exchange.publish(
                    message_for(entry), entry.routing_key, mandatory=True, timeout=self._timeout
                )
                for entry in entries
            ),
            return_exceptions=True,
        )
        for entry, outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, Basic.Ack):
                result.confirmed.append(entry.event_id)
            elif isinstance(outcome, PublishError):  # returned: no queue is bound to the key
                result.failed[entry.event_id] = "returned unroutable (mandatory): no queue bound"
            elif isinstance(outcome, BaseException):
                result.failed[entry.event_id] = f"{type(outcome).__name__}: {outcome}"[:300]
            else:  # a nack, or a return without raising
                result.failed[entry.event_id] = f"not confirmed: {type(outcome).__name__}"
        return result

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = None
        self._exchange = None
