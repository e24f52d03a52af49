"""Publishing outbox entries to RabbitMQ: persistent, confirmed, mandatory.

The `EventPublisher` port this implements is in `signup.service_layer.ports`. It runs on
aiormq, the library under the workers' aio-pika (docs/decisions/0019-publisher.md): the
two sides read the same URL options (`heartbeat`, `cafile`, `no_verify_ssl`, …) the
same way, and aiormq advertises `connection.blocked` and `authentication_failure_close`,
answers heartbeats and drops a silent peer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiormq
import pamqp.frame
import structlog
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from signup.adapters.broker_nodes import BrokerNodes
from signup.service_layer.ports import OutboxEntry, PublishResult

log = structlog.get_logger(__name__)
CONTENT_TYPE = "application/cloudevents+json"
APP_ID = "signup"
CONNECT_SECONDS = 10.0
RETURNED = "returned unroutable (mandatory): no queue bound"
NACKED = "nacked by the broker"


class _Link(aiormq.Connection):
    """aiormq's connection, with two changes.

    - A peer silent for the heartbeat timeout plus a second is dead (aiormq's default
      waits three timeouts): a black-holed link is noticed within two timeouts.
    - `blocked` says whether the broker has blocked publishing (a memory or disk
      alarm): the publisher then waits instead of timing the confirms out and
      connecting again, which would only make another blocked connection.
    """

    HEARTBEAT_GRACE_MULTIPLIER = 1

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.blocked: str | None = None  # the broker's reason while blocked
        self.unblocked = asyncio.Event()
        self.unblocked.set()

    @staticmethod
    async def _rpc(
        request: Any, writer: asyncio.StreamWriter, frame_receiver: Any, wait_response: bool = True
    ) -> Any:
        """aiormq's handshake step, but a Connection.Close in answer (a vhost refused at
        Connection.Open) raises the broker's code and reason, not "expected OpenOk"."""
        writer.write(pamqp.frame.marshal(request, 0))
        await writer.drain()
        if not wait_response:
            return None
        _, _, frame = await frame_receiver.get_frame()
        if isinstance(frame, spec.Connection.Close):
            if frame.reply_code == 403:
                raise aiormq.exceptions.ProbableAuthenticationError(frame.reply_text)
            raise aiormq.connection.exception_by_code(frame)
        if request.synchronous and frame.name not in request.valid_responses:
            raise aiormq.exceptions.InvalidFrameError(
                f"Expected one of {request.valid_responses!r}, got {frame!r}"
            )
        return frame

    # aiormq dispatches Connection.Blocked / Unblocked to these (name-mangled) methods;
    # tests/unit/test_publisher.py proves it with scripted frames.
    async def _Connection__handle_connection_blocked(self, frame: spec.Connection.Blocked) -> None:
        self.blocked = frame.reason or "blocked"
        self.unblocked.clear()
        log.warning(
            "broker blocked publishing: events wait in the outbox until it unblocks",
            reason=self.blocked,
        )

    async def _Connection__handle_connection_unblocked(self, _: spec.Connection.Unblocked) -> None:
        self.blocked = None
        self.unblocked.set()
        log.info("broker unblocked publishing: sending the events that waited")


_CODES: dict[type[BaseException], int] = {
    kind: code
    for mapping in (aiormq.channel.EXCEPTION_MAPPING, aiormq.connection.EXCEPTION_MAPPING)
    for code, kind in mapping.items()
}


def describe(exc: BaseException) -> str:
    """Why the broker cannot be used, in words an operator acts on (no password)."""
    code = _CODES.get(type(exc))
    text = f"{code or ''} {type(exc).__name__}: {exc}".strip()
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError) or "ACCESS_REFUSED" in text:
        return f"wrong credentials (ACCESS_REFUSED): {text}"
    if isinstance(exc, aiormq.exceptions.ConnectionNotAllowed):
        return f"virtual host refused (NOT_ALLOWED): {text}"
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return f"exchange missing (NOT_FOUND), declaring it again: {text}"
    if isinstance(exc, TimeoutError):
        return "no answer from the broker in time"
    if isinstance(exc, OSError):
        return f"cannot reach the broker: {text}"
    return text


class AmqpPublisher:
    """One connection and confirm channel; after an outage or any broker error the next
    batch connects again and declares the exchange again.

    With several broker nodes (`url` comma-separated, or `BrokerNodes`) it uses one; a
    connection lost or refused moves it to the next, and one connecting attempt tries
    each node once before it gives the batch up. `node` says which one it is on.
    """

    def __init__(
        self, url: str | BrokerNodes, exchange: str, *, confirm_timeout: float = 10.0
    ) -> None:
        self._nodes = url if isinstance(url, BrokerNodes) else BrokerNodes.parse(url)
        self._exchange_name = exchange
        self._timeout = confirm_timeout
        self._link: _Link | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()
        # Said once an outage, not once a retry: the relay tries again every few seconds.
        self._outage_told = False
        self._problem: str | None = "not connected yet"

    @property
    def connected(self) -> bool:
        return self._usable()

    @property
    def node(self) -> str | None:
        """The broker node (`host:port`) of the live connection; None while there is none."""
        return self._nodes.node if self._usable() else None

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes.nodes

    @property
    def problem(self) -> str | None:
        """Why the broker is not usable now (None: it is): for `/readyz`."""
        if self._usable() and self._link is not None and self._link.blocked:
            return f"publishing blocked by the broker: {self._link.blocked}"
        return None if self._usable() else self._problem

    def _usable(self) -> bool:
        return (
            self._link is not None
            and not self._link.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def _ready(self) -> tuple[_Link, aiormq.abc.AbstractChannel]:
        async with self._lock:
            if not self._usable():
                if self._link is not None:  # the node we were on failed: try the next first
                    self._nodes.advance()
                await self._drop()
                self._link, self._channel = await self._connect_any()
                self._problem = None
                if self._outage_told:
                    self._outage_told = False
                    log.info(
                        "broker reachable again: sending the events that waited",
                        broker=self._nodes.node,
                    )
                else:
                    log.info("broker connected", broker=self._nodes.node)
            assert self._link is not None and self._channel is not None
            return self._link, self._channel

    async def _connect_any(self) -> tuple[_Link, aiormq.abc.AbstractChannel]:
        """Connect to the current node, else to each next one once; the last error."""
        for tried in range(1, len(self._nodes) + 1):
            try:
                return await self._connect(self._nodes.url)
            except Exception as exc:
                if tried == len(self._nodes):
                    raise
                log.warning(
                    "broker node not usable: trying the next",
                    broker=self._nodes.node,
                    error=describe(exc)[:300],
                )
                self._nodes.advance()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _connect(self, url: str) -> tuple[_Link, aiormq.abc.AbstractChannel]:
        link = _Link(url, client_properties={"connection_name": "signup-relay"})
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                await link.connect()
                channel = await link.channel(publisher_confirms=True, on_return_raises=False)
                await channel.exchange_declare(
                    self._exchange_name, exchange_type="topic", durable=True
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await link.close()
            raise
        return link, channel

    def _tell_outage(self, error: str) -> None:
        self._problem = error[:300]
        if self._outage_told:
            return
        self._outage_told = True
        log.warning(  # host and port only: the URLs carry the password
            "broker not reachable: events wait in the outbox until it is "
            "(sign-ups go on; the relay keeps trying)",
            broker=self._nodes.node if len(self._nodes) == 1 else ",".join(self._nodes.nodes),
            error=error[:300],
        )

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        result = PublishResult()
        if not entries:
            return result
        try:
            link, channel = await self._ready()
            await self._while_blocked(link)
        except Exception as exc:
            why = describe(exc)
            self._tell_outage(why)
            result.failed = {e.event_id: f"broker unreachable: {why}"[:300] for e in entries}
            return result
        try:
            sends = await self._send_batch(channel, entries)
        except Exception as exc:  # the channel or connection went while writing
            why = describe(exc)
            self._tell_outage(why)
            result.failed = {e.event_id: f"broker unreachable: {why}"[:300] for e in entries}
            return result
        await self._confirmed(link, list(sends.values()))
        for event_id, send in sends.items():
            failure = self._outcome(send)
            if failure is None:
                result.confirmed.append(event_id)
            else:
                result.failed[event_id] = failure[:300]
        if (
            len(self._nodes) > 1
            and not result.confirmed
            and result.failed
            and all(reason == NACKED for reason in result.failed.values())
            and self._usable()
        ):
            # Whole batches were nacked for seconds while a cluster node stopped
            # (`rabbitmqctl stop_app`, tests/faults/test_cluster.py), its connections still
            # open: the node may be on its way out, and another may accept.
            log.warning(
                "broker node nacked a whole batch: moving to the next node", broker=self._nodes.node
            )
            await self._close_link(link, "every publish of a batch nacked")
        if not self._usable():  # lost while this batch was out: the next one reconnects
            why = self._closed_because(link, channel)
            if "NOT_FOUND" in why:
                log.error("broker: the exchange is gone; declaring it again", error=why[:300])
            self._tell_outage(why)
        return result

    async def _send_batch(
        self, channel: aiormq.abc.AbstractChannel, entries: list[OutboxEntry]
    ) -> dict[str, asyncio.Future[object]]:
        """Write a whole batch's publishes at once, each with its confirm to wait for.

        aiormq's `basic_publish` takes the channel's lock, a timeout scope, a queue put
        and a drain for every message: in the web process, beside the sign-ups, that was
        several times the CPU of the rest of publishing, and the relay fell behind the
        sign-ups at half load (docs/decisions/0019). This does what it does for each
        message (the next delivery tag, a confirm registered under it and under the
        message id, for returns) under one lock, and queues one frame of them all. An
        entry that cannot be encoded fails alone, before it takes a delivery tag.
        """
        ch: Any = channel  # aiormq.Channel: its lock, tags and confirmations are used
        sends: dict[str, asyncio.Future[object]] = {}
        parts: list[bytes] = []
        async with ch.lock:
            for entry in entries:
                try:
                    part = ChannelFrame.marshall(
                        channel_number=ch.number, frames=self._frames(ch, entry)
                    ).payload
                except Exception as exc:
                    failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
                    failed.set_exception(exc)
                    failed.exception()  # retrieved: it is reported as the entry's failure
                    sends[entry.event_id] = failed
                    continue
                ch.delivery_tag += 1
                tag = ch.delivery_tag
                confirmation: asyncio.Future[object] = ch.create_future()
                ch.confirmations[tag] = confirmation
                ch.message_id_delivery_tag[entry.event_id] = tag
                confirmation.add_done_callback(_forgetting(ch, entry.event_id, tag))
                sends[entry.event_id] = confirmation
                parts.append(part)
            if parts:
                drained: asyncio.Future[None] = ch.create_future()
                await ch.write_queue.put(
                    ChannelFrame(payload=b"".join(parts), should_close=False, drain_future=drained)
                )
        if parts:
            await drained
        return sends

    def _frames(self, channel: Any, entry: OutboxEntry) -> list[Any]:
        properties = spec.Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=2,
            message_id=entry.event_id,
            timestamp=entry.created_at,
            message_type=entry.event_type,
            app_id=APP_ID,
        )
        return [
            spec.Basic.Publish(
                exchange=self._exchange_name, routing_key=entry.routing_key, mandatory=True
            ),
            ContentHeader(properties=properties, body_size=len(entry.payload)),
            *channel._split_body(entry.payload),
        ]

    async def _while_blocked(self, link: _Link) -> None:
        """Wait out a blocked connection (however long the alarm lasts) or its loss."""
        if link.unblocked.is_set():
            return
        unblocked = asyncio.ensure_future(link.unblocked.wait())
        try:
            await asyncio.wait([unblocked, link.closing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            unblocked.cancel()
        if link.is_closed:
            raise ConnectionError("connection lost while the broker blocked publishing")

    async def _confirmed(self, link: _Link, sends: list[asyncio.Future[object]]) -> None:
        """Wait for every confirm. The time-out is for the broker going quiet: it runs
        from the last confirm that came (a large batch on a busy machine takes longer
        than the time-out to confirm in full, and giving it up would only send it again),
        and not at all while the broker blocks us."""
        pending = set(sends)
        while pending:
            before = len(pending)
            _, pending = await asyncio.wait(pending, timeout=self._timeout)
            if pending and len(pending) < before:
                continue  # confirms are coming: the broker is not quiet
            if pending and link.blocked is None and not link.is_closed:
                self._problem = "no confirm from the broker in time"
                for send in pending:
                    send.cancel()
                await self._close_link(link, "no confirm from the broker in time")
                await asyncio.wait(pending)
                return
            if pending and link.is_closed:
                await asyncio.wait(pending)

    @staticmethod
    def _outcome(send: asyncio.Future[object]) -> str | None:
        if send.cancelled():
            return "no confirm from the broker in time"
        if isinstance(exc := send.exception(), aiormq.exceptions.DeliveryError):
            return NACKED
        if exc is not None:
            return describe(exc)
        answer = send.result()
        if isinstance(answer, spec.Basic.Ack):
            return None
        if isinstance(answer, DeliveredMessage):
            return RETURNED
        if isinstance(answer, spec.Basic.Nack):
            return NACKED
        return f"unexpected answer {type(answer).__name__}"

    def _closed_because(self, link: _Link, channel: aiormq.abc.AbstractChannel) -> str:
        for closed in (channel, link):
            with contextlib.suppress(Exception):
                if closed.closing.done() and (exc := closed.closing.exception()) is not None:
                    return describe(exc)
        return self._problem or "connection lost"

    async def _close_link(self, link: _Link, why: str) -> None:
        with contextlib.suppress(Exception):
            await link.close(ConnectionError(why))

    async def _drop(self) -> None:
        link, self._link, self._channel = self._link, None, None
        if link is not None:
            await self._close_link(link, "reconnecting")

    async def close(self) -> None:
        await self._drop()


def _forgetting(channel: Any, message_id: str, tag: int) -> Any:
    """Drop the message id's entry once its confirm came (as `basic_publish` does)."""

    def forget(_: asyncio.Future[object]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == tag:
            channel.message_id_delivery_tag.pop(message_id)

    return forget
