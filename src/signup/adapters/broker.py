"""Publishing outbox entries to RabbitMQ: persistent, confirmed, mandatory.

The `EventPublisher` port this implements is in `signup.service_layer.ports`.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import structlog

from signup.adapters.amqp_wire import ConfirmingConnection, Outgoing
from signup.service_layer.ports import OutboxEntry, PublishResult

log = structlog.get_logger(__name__)
CONTENT_TYPE = "application/cloudevents+json"
APP_ID = "signup"


class AmqpPublisher:
    """One connection and confirm channel (see `amqp_wire`); after an outage or any
    broker error the next batch connects again."""

    def __init__(self, url: str, exchange: str, *, confirm_timeout: float = 10.0) -> None:
        self._url = url
        self._exchange_name = exchange
        self._timeout = confirm_timeout
        self._connection: ConfirmingConnection | None = None
        self._lock = asyncio.Lock()
        # Said once an outage, not once a retry: the relay tries again every few seconds.
        self._outage_told = False

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.open

    async def _ready(self) -> ConfirmingConnection:
        async with self._lock:
            if self._connection is not None and not self._connection.open:
                await self._connection.close()
                self._connection = None
            if self._connection is None:
                connection = ConfirmingConnection(self._url, self._exchange_name, "signup-relay")
                try:
                    await connection.connect(within=10)
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection
                if self._outage_told:
                    self._outage_told = False
                    log.info("broker reachable again: sending the events that waited")
            return self._connection

    def _tell_outage(self, error: str) -> None:
        if self._outage_told:
            return
        self._outage_told = True
        where = urlsplit(self._url)  # host and port only: the URL carries the password
        log.warning(
            "broker not reachable: events wait in the outbox until it is "
            "(sign-ups go on; the relay keeps trying)",
            broker=f"{where.hostname or 'localhost'}:{where.port or 5672}",
            error=error[:300],
        )

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        result = PublishResult()
        if not entries:
            return result
        try:
            connection = await self._ready()
            outcomes = await connection.publish(
                [
                    Outgoing(
                        message_id=entry.event_id,
                        routing_key=entry.routing_key,
                        body=entry.payload,
                        content_type=CONTENT_TYPE,
                        type=entry.event_type,
                        app_id=APP_ID,
                        timestamp=entry.created_at,
                    )
                    for entry in entries
                ],
                within=self._timeout,
            )
        except Exception as exc:
            self._tell_outage(f"{type(exc).__name__}: {exc}")
            reason = f"broker unreachable: {type(exc).__name__}: {exc}"[:300]
            result.failed = {e.event_id: reason for e in entries}
            return result
        if not connection.open:  # lost while this batch was out: the next one reconnects
            self._tell_outage(next(filter(None, outcomes.values()), "connection lost"))
        for entry in entries:
            failure = outcomes.get(entry.event_id, "no outcome")
            if failure is None:
                result.confirmed.append(entry.event_id)
            else:
                result.failed[entry.event_id] = failure[:300]
        return result

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
