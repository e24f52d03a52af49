"""What the worker runtime writes on and reads from a message: its headers, a copy of
it for a retry or parking queue, and its event id."""

from __future__ import annotations

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, HeadersType

ATTEMPTS_HEADER = "x-signup-attempts"
REASON_HEADER = "x-signup-reason"
CONSUMER_HEADER = "x-signup-consumer"
PARKED_AT_HEADER = "x-signup-parked-at"
REQUEUED_HEADER = "x-signup-requeued"
MAX_REASON_CHARS = 500


def clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def as_int(value: object) -> int:
    try:
        return int(as_text(value) or 0)
    except ValueError:
        return 0


def copy_message(message: AbstractIncomingMessage, headers: HeadersType) -> aio_pika.Message:
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
