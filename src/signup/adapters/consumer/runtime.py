"""The worker runtime: one `user.new` consumer on RabbitMQ (aio-pika), with delayed
retries, a parking queue (`topology`) and once-per-event-id side effects.

Per message: parse as `UserRegistered` or `SignupAttempted` (malformed: park at once) →
skip when the event id is already recorded as processed → run the handler → record the id → ack.
`TransientFailure` (or any unexpected exception) republishes the message to the next
retry queue with `x-signup-attempts` + 1; after the last delay, and at once for
`PermanentFailure`, it is parked. Every republication waits for the publisher
confirm before the original is acked, so a message is never lost in between.

Deduplication: record AFTER the side effect. The table has no claim/lease state, and
a bare claim written before the effect would lose the effect for good if the worker
died in between (at-most-once), which the contract does not allow. So the effect is
at-least-once with dedupe: the only window for a repeat is a crash (or a database
failure) between a successful side effect and its record, and that repeat carries
the same Message-ID / `webhook-id` so the receiver can recognise it. Within one
process, messages with the same event id are handled one after the other, so two
copies delivered together do not both pass the check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    HeadersType,
)
from pydantic import ValidationError

from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.consumer.connection import CONNECT_SECONDS, RotatingConnection
from signup.adapters.consumer.messages import (
    ATTEMPTS_HEADER,
    CONSUMER_HEADER,
    PARKED_AT_HEADER,
    REASON_HEADER,
    as_int,
    clip,
    copy_message,
)
from signup.adapters.consumer.topology import Topology
from signup.adapters.consumer_metrics import DEPTH_EVERY_SECONDS, ConsumerStats
from signup.adapters.processed import ProcessedEvents
from signup.domain.events import ConsumedEvent, parse_consumed
from signup.service_layer.failures import PermanentFailure, TransientFailure
from signup.service_layer.retention import Pruner

Handler = Callable[[ConsumedEvent], Awaitable[None]]

log = structlog.get_logger(__name__)


class _KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _malformed_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error["loc"]) or "body"
            parts.append(f"{where}: {error['msg']}")
        return clip("malformed user.new event: " + "; ".join(parts))
    return clip(f"malformed user.new event: {type(exc).__name__}: {exc}")


class Consumer:
    """Runs `handler` for every `user.new` event reaching this consumer's queue.

    `start()` connects (robustly: a lost connection is re-established and the topology
    and the consumer are declared again), `stop()` stops taking messages, lets the
    ones in hand finish and closes; `run(stop_event)` does both around the event.
    The counters are in `stats`.
    """

    def __init__(
        self,
        *,
        topology: Topology,
        amqp_url: str | BrokerNodes,
        handler: Handler,
        processed: ProcessedEvents,
        prefetch: int = 16,
        shutdown_grace_seconds: float = 30.0,
        record_attempts: int = 3,
        reconnect_interval: float = 5.0,
        pruner: Pruner | None = None,
    ) -> None:
        self.topology = topology
        self.name = topology.name
        self.stats = ConsumerStats(topology.name)
        self._nodes = amqp_url if isinstance(amqp_url, BrokerNodes) else BrokerNodes.parse(amqp_url)
        self._handler = handler
        self._processed = processed
        self._prefetch = prefetch
        self._grace = shutdown_grace_seconds
        self._record_attempts = max(1, record_attempts)
        self._reconnect_interval = reconnect_interval
        # Forgets processed ids past their retention while the consumer runs.
        self.pruner = pruner
        self._connection: RotatingConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks = _KeyedLocks()
        self._log = log.bind(consumer=topology.name, queue=topology.queue)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def node(self) -> str | None:
        """The broker node (`host:port`) this worker is connected to, if it is."""
        connection = self._connection
        return connection.node if connection is not None and connection.connected.is_set() else None

    async def _connect(self) -> RotatingConnection:
        """Connect to a node, trying each once (then it is aio-pika's robust reconnect,
        over the nodes, that keeps the connection)."""
        for tried in range(1, len(self._nodes) + 1):
            connection = RotatingConnection(
                self._nodes,
                reconnect_interval=self._reconnect_interval,
                client_properties={"connection_name": f"signup-worker {self.topology.queue}"},
            )
            try:
                await connection.connect(timeout=CONNECT_SECONDS)
                return connection
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await connection.close()
                if tried == len(self._nodes):
                    raise
                self._log.warning(
                    "broker node not usable: trying the next",
                    broker=self._nodes.node,
                    error=str(exc),
                )
                self._nodes.advance()
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self) -> None:
        self._connection = await self._connect()
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        await channel.set_qos(prefetch_count=self._prefetch)
        self._queue = await self.topology.declare(channel, self._connection)
        self._consumer_tag = await self._queue.consume(self._on_message)
        self._log.info("consumer started", prefetch=self._prefetch, broker=self._connection.node)

    async def stop(self) -> None:
        """Stop taking messages, finish those in hand (up to the grace period), close."""
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception as exc:  # the connection may be down; closing still works
                self._log.warning("cancelling the consumer failed", error=str(exc))
            self._consumer_tag = None
        if self._tasks:
            self._log.info("finishing messages in hand", count=len(self._tasks))
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self._grace)
            for task in pending:  # unacked: the broker hands them out again
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._log.info(
            "consumer stopped",
            processed=self.stats.processed,
            retried=self.stats.retried,
            dead_lettered=self.stats.dead_lettered,
            duplicates_skipped=self.stats.duplicates_skipped,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        tasks = [asyncio.create_task(self._watch_depths(stop), name="queue-depths")]
        if self.pruner is not None:
            tasks.append(asyncio.create_task(self.pruner.run(stop), name="processed-pruner"))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.stop()

    async def measure_depths(self) -> tuple[int, int]:
        """(parked, waiting for a retry) as the broker counts them now; into the gauges."""
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            dead = await channel.declare_queue(self.topology.dead_queue, passive=True)
            retrying = 0
            for name in self.topology.retry_queues:
                queue = await channel.declare_queue(name, passive=True)
                retrying += queue.declaration_result.message_count or 0
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        parked = dead.declaration_result.message_count or 0
        self.stats.set_depths(parked, retrying)
        return parked, retrying

    async def _watch_depths(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.measure_depths()
            except Exception as exc:  # the broker away: the next round measures again
                self._log.debug("queue depths not measured", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), DEPTH_EVERY_SECONDS)

    def _on_reconnect(self, *_args: Any, **_kwargs: Any) -> None:
        # aio-pika has re-opened the channel and re-declared the exchange, the queues,
        # the binding, the QoS and the consumer by now.
        self.stats.reconnects += 1
        self._log.warning(
            "reconnected to the broker", reconnects=self.stats.reconnects, broker=self.node
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Our own task, not the channel's: a lost connection must not cancel a side
        # effect half-way; its ack then fails and the broker redelivers (deduplicated).
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._process(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Retry or park could not be published (broker trouble): leave the message
            # to the broker; its delivery count bounds how often this can happen.
            self._log.exception("message left unsettled", message_id=message.message_id)
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            event = parse_consumed(message.body)
        except (ValidationError, ValueError) as exc:
            await self._park(message, _malformed_reason(exc), attempts=0)
            return
        logger = self._log.bind(event_id=event.id)
        async with self._locks.hold(event.id):
            attempts = as_int(message.headers.get(ATTEMPTS_HEADER)) + 1
            try:
                if await self._processed.is_processed(self.name, event.id):
                    await self._ack(message)
                    self.stats.count_duplicate()
                    logger.info("duplicate skipped")
                    return
                await self._handler(event)
            except PermanentFailure as exc:
                logger.warning("side effect refused", reason=exc.reason)
                await self._park(message, exc.reason, attempts=attempts)
                return
            except TransientFailure as exc:
                logger.warning("side effect failed", reason=exc.reason, attempt=attempts)
                await self._retry(message, exc.reason, attempts=attempts)
                return
            except Exception as exc:
                logger.exception("side effect crashed", attempt=attempts)
                await self._retry(message, f"{type(exc).__name__}: {exc}", attempts=attempts)
                return
            await self._record(event.id)
            await self._ack(message)
            self.stats.count_processed()
            logger.info("processed", attempt=attempts)

    async def _record(self, event_id: str) -> None:
        for attempt in range(1, self._record_attempts + 1):
            try:
                await self._processed.mark_processed(self.name, event_id)
                return
            except Exception as exc:
                if attempt == self._record_attempts:
                    # The effect happened; acking is still right. Only a later duplicate
                    # of this event would not be recognised.
                    self._log.error(
                        "could not record a processed event", event_id=event_id, error=str(exc)
                    )
                    return
                await asyncio.sleep(0.2 * attempt)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:
            self._log.warning(
                "ack lost; the broker will redeliver", message_id=message.message_id, error=str(exc)
            )

    async def _publish(self, message: aio_pika.Message, queue: str) -> None:
        assert self._channel is not None
        # Publisher confirm (and mandatory routing) awaited: only then is the original acked.
        await self._channel.default_exchange.publish(message, routing_key=queue, mandatory=True)

    async def _retry(self, message: AbstractIncomingMessage, reason: str, *, attempts: int) -> None:
        delays = self.topology.retry_delays_ms
        if attempts > len(delays):
            await self._park(
                message, f"gave up after {attempts} attempts: {reason}", attempts=attempts
            )
            return
        delay_ms = delays[attempts - 1]
        headers: HeadersType = {
            **message.headers,
            ATTEMPTS_HEADER: attempts,
            REASON_HEADER: clip(reason),
        }
        await self._publish(copy_message(message, headers), self.topology.retry_queue(delay_ms))
        await self._ack(message)
        self.stats.count_retried()
        self._log.info(
            "retry scheduled", message_id=message.message_id, attempt=attempts, delay_ms=delay_ms
        )

    async def _park(self, message: AbstractIncomingMessage, reason: str, *, attempts: int) -> None:
        headers: HeadersType = {
            **message.headers,
            ATTEMPTS_HEADER: attempts,
            REASON_HEADER: clip(reason),
            CONSUMER_HEADER: self.name,
            PARKED_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
        }
        await self._publish(copy_message(message, headers), self.topology.dead_queue)
        await self._ack(message)
        self.stats.count_dead_lettered()
        self._log.warning("message parked", message_id=message.message_id, reason=clip(reason))
