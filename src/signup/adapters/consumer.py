"""The worker runtime: one `user.new` consumer on RabbitMQ (aio-pika), with delayed
retries, a parking queue and once-per-event-id side effects.

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

Per message: parse as `UserRegistered` (malformed: park at once) → skip when the
event id is already recorded as processed → run the handler → record the id → ack.
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
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    HeadersType,
)
from pamqp.common import FieldValue
from pydantic import ValidationError

from signup.adapters.consumer_metrics import ConsumerStats
from signup.adapters.processed import ProcessedEvents
from signup.domain.events import USER_NEW, UserRegistered
from signup.service_layer.failures import PermanentFailure, TransientFailure

ATTEMPTS_HEADER = "x-signup-attempts"
REASON_HEADER = "x-signup-reason"
CONSUMER_HEADER = "x-signup-consumer"
PARKED_AT_HEADER = "x-signup-parked-at"
REQUEUED_HEADER = "x-signup-requeued"
DEFAULT_PREFIX = "signup"
MAX_REASON_CHARS = 500
# Broker bookkeeping dropped when a parked message goes back to the main queue, so the
# broker's dead-letter cycle detection does not mistake the requeue for a loop.
_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)

Handler = Callable[[UserRegistered], Awaitable[None]]

log = structlog.get_logger(__name__)


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


def _clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _malformed_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error["loc"]) or "body"
            parts.append(f"{where}: {error['msg']}")
        return _clip("malformed user.new event: " + "; ".join(parts))
    return _clip(f"malformed user.new event: {type(exc).__name__}: {exc}")


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _as_int(value: object) -> int:
    try:
        return int(_as_text(value) or 0)
    except ValueError:
        return 0


def _copy(message: AbstractIncomingMessage, headers: HeadersType) -> aio_pika.Message:
    """The same body and properties (persistent), with new headers.

    `expiration` and `user_id` are not carried over: one would expire the copy, the
    other must name the publishing connection's own user.
    """
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


def event_id_of(message: AbstractIncomingMessage) -> str | None:
    """The event id: the AMQP `message_id`, else the CloudEvent `id` in the body."""
    if message.message_id:
        return message.message_id
    try:
        body = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        return None
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


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
        amqp_url: str,
        handler: Handler,
        processed: ProcessedEvents,
        prefetch: int = 16,
        shutdown_grace_seconds: float = 30.0,
        record_attempts: int = 3,
        reconnect_interval: float = 5.0,
    ) -> None:
        self.topology = topology
        self.name = topology.name
        self.stats = ConsumerStats(topology.name)
        self._amqp_url = amqp_url
        self._handler = handler
        self._processed = processed
        self._prefetch = prefetch
        self._grace = shutdown_grace_seconds
        self._record_attempts = max(1, record_attempts)
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks = _KeyedLocks()
        self._log = log.bind(consumer=topology.name, queue=topology.queue)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._amqp_url,
            reconnect_interval=self._reconnect_interval,
            client_properties={"connection_name": f"signup-worker {self.topology.queue}"},
        )
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        await channel.set_qos(prefetch_count=self._prefetch)
        self._queue = await self.topology.declare(channel)
        self._consumer_tag = await self._queue.consume(self._on_message)
        self._log.info("consumer started", prefetch=self._prefetch)

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
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _on_reconnect(self, *_args: Any, **_kwargs: Any) -> None:
        # aio-pika has re-opened the channel and re-declared the exchange, the queues,
        # the binding, the QoS and the consumer by now.
        self.stats.reconnects += 1
        self._log.warning("reconnected to the broker", reconnects=self.stats.reconnects)

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
            event = UserRegistered.from_json(message.body)
        except (ValidationError, ValueError) as exc:
            await self._park(message, _malformed_reason(exc), attempts=0)
            return
        logger = self._log.bind(event_id=event.id)
        async with self._locks.hold(event.id):
            attempts = _as_int(message.headers.get(ATTEMPTS_HEADER)) + 1
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
            REASON_HEADER: _clip(reason),
        }
        await self._publish(_copy(message, headers), self.topology.retry_queue(delay_ms))
        await self._ack(message)
        self.stats.count_retried()
        self._log.info(
            "retry scheduled", message_id=message.message_id, attempt=attempts, delay_ms=delay_ms
        )

    async def _park(self, message: AbstractIncomingMessage, reason: str, *, attempts: int) -> None:
        headers: HeadersType = {
            **message.headers,
            ATTEMPTS_HEADER: attempts,
            REASON_HEADER: _clip(reason),
            CONSUMER_HEADER: self.name,
            PARKED_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
        }
        await self._publish(_copy(message, headers), self.topology.dead_queue)
        await self._ack(message)
        self.stats.count_dead_lettered()
        self._log.warning("message parked", message_id=message.message_id, reason=_clip(reason))


# Operations on parked messages (the `signup worker dead-letters|requeue` commands).


@dataclass(frozen=True)
class DeadLetter:
    event_id: str | None
    reason: str
    attempts: int
    parked_at: str | None
    headers: Mapping[str, Any] = field(repr=False, default_factory=dict)


def _reason_of(headers: Mapping[str, Any]) -> str:
    reason = _as_text(headers.get(REASON_HEADER))
    if reason:
        return reason
    # Dead-lettered by the broker itself (delivery limit reached).
    broker_reason = _as_text(headers.get("x-first-death-reason"))
    if broker_reason:
        return f"broker: {broker_reason}"
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {_as_text(deaths[0].get('reason'))}"
    return "unknown"


def _dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers)
    return DeadLetter(
        event_id=event_id_of(message),
        reason=_reason_of(headers),
        attempts=_as_int(headers.get(ATTEMPTS_HEADER)),
        parked_at=_as_text(headers.get(PARKED_AT_HEADER)),
        headers=headers,
    )


async def list_dead_letters(
    amqp_url: str, topology: Topology, *, limit: int = 100
) -> tuple[list[DeadLetter], int]:
    """Up to `limit` parked messages (left in place) and how many are parked in all."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        total = dead.declaration_result.message_count or 0
        letters: list[DeadLetter] = []
        # Fetched without ack; closing the channel puts them all back, in order.
        for _ in range(min(total, limit)):
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            letters.append(_dead_letter(message))
    return letters, total


async def requeue_dead_letters(
    amqp_url: str, topology: Topology, *, event_id: str | None = None
) -> int:
    """Move parked messages (all, or those of one event id) back to the main queue.

    Attempts and reason are reset, so a requeued message gets the full retry schedule.
    Each is published with a confirm before it is removed from the dead queue.
    """
    connection = await aio_pika.connect(amqp_url)
    moved = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.declare_queue(topology.queue, passive=True)
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        total = dead.declaration_result.message_count or 0
        for _ in range(total):
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            if event_id is not None and event_id_of(message) != event_id:
                continue  # stays unacked until the channel closes: back in place
            headers: HeadersType = {
                key: value
                for key, value in message.headers.items()
                if key not in _DEATH_HEADERS
                and key not in (ATTEMPTS_HEADER, REASON_HEADER, PARKED_AT_HEADER, CONSUMER_HEADER)
            }
            headers[REQUEUED_HEADER] = _as_int(message.headers.get(REQUEUED_HEADER)) + 1
            await channel.default_exchange.publish(
                _copy(message, headers), routing_key=topology.queue, mandatory=True
            )
            await message.ack()
            moved += 1
    return moved


async def delete_topology(amqp_url: str, topology: Topology, *, exchange: bool = False) -> None:
    """Delete the consumer's queues (and the exchange when asked); for tests and teardown."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in (topology.queue, topology.dead_queue, *topology.retry_queues):
            await channel.queue_delete(name, if_unused=False, if_empty=False)
        if exchange:
            await channel.exchange_delete(topology.exchange)
