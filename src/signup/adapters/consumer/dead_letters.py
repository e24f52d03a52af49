"""Operations on parked messages (the `signup worker dead-letters|requeue` commands)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, HeadersType

from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.consumer.connection import connect_any
from signup.adapters.consumer.messages import (
    ATTEMPTS_HEADER,
    CONSUMER_HEADER,
    PARKED_AT_HEADER,
    REASON_HEADER,
    REQUEUED_HEADER,
    as_int,
    as_text,
    copy_message,
    event_id_of,
)
from signup.adapters.consumer.topology import Topology

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


@dataclass(frozen=True)
class DeadLetter:
    event_id: str | None
    reason: str
    attempts: int
    parked_at: str | None
    headers: Mapping[str, Any] = field(repr=False, default_factory=dict)


def _reason_of(headers: Mapping[str, Any]) -> str:
    reason = as_text(headers.get(REASON_HEADER))
    if reason:
        return reason
    # Dead-lettered by the broker itself (delivery limit reached).
    broker_reason = as_text(headers.get("x-first-death-reason"))
    if broker_reason:
        return f"broker: {broker_reason}"
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {as_text(deaths[0].get('reason'))}"
    return "unknown"


def _dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers)
    return DeadLetter(
        event_id=event_id_of(message),
        reason=_reason_of(headers),
        attempts=as_int(headers.get(ATTEMPTS_HEADER)),
        parked_at=as_text(headers.get(PARKED_AT_HEADER)),
        headers=headers,
    )


async def list_dead_letters(
    amqp_url: str, topology: Topology, *, limit: int = 100
) -> tuple[list[DeadLetter], int]:
    """Up to `limit` parked messages (left in place) and how many are parked in all."""
    connection = await connect_any(BrokerNodes.parse(amqp_url))
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        total = dead.declaration_result.message_count or 0
        letters: list[DeadLetter] = []
        # Fetched without ack; closing the channel puts them all back, in order.
        for _ in range(limit):  # not `total`: messages just returned come back a moment later
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            letters.append(_dead_letter(message))
    return letters, max(total, len(letters))


async def requeue_dead_letters(
    amqp_url: str, topology: Topology, *, event_id: str | None = None
) -> int:
    """Move parked messages (all, or those of one event id) back to the main queue.

    Attempts and reason are reset, so a requeued message gets the full retry schedule.
    Each is published with a confirm before it is removed from the dead queue.
    """
    connection = await connect_any(BrokerNodes.parse(amqp_url))
    moved = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.declare_queue(topology.queue, passive=True)
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        # Until none is ready (not `total` times): a quorum queue takes back messages
        # another client just returned (a listing) a moment later, and those left here
        # unacked are not handed out twice on this channel.
        while (message := await dead.get(no_ack=False, fail=False)) is not None:
            if event_id is not None and event_id_of(message) != event_id:
                continue  # stays unacked until the channel closes: back in place
            headers: HeadersType = {
                key: value
                for key, value in message.headers.items()
                if key not in _DEATH_HEADERS
                and key not in (ATTEMPTS_HEADER, REASON_HEADER, PARKED_AT_HEADER, CONSUMER_HEADER)
            }
            headers[REQUEUED_HEADER] = as_int(message.headers.get(REQUEUED_HEADER)) + 1
            await channel.default_exchange.publish(
                copy_message(message, headers), routing_key=topology.queue, mandatory=True
            )
            await message.ack()
            moved += 1
    return moved
