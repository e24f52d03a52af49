"""The workers' connection: aio-pika's robust connection, moving over the broker nodes.

aio-pika reconnects a robust connection to the one URL it was given. With several
nodes (`BrokerNodes`) this one reads its URL from the nodes at every attempt and moves
to the next node when an established connection is lost or an attempt fails, so a
worker whose node died carries on at another; aio-pika then declares the topology and
the consumer again as it always does. Which node it is on goes to the log (`host:port`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from signup.adapters.broker_nodes import BrokerNodes

log = structlog.get_logger(__name__)
CONNECT_SECONDS = 10.0


class RotatingConnection(RobustConnection):
    def __init__(self, nodes: BrokerNodes, **kwargs: Any) -> None:
        self._nodes = nodes
        # Read at every attempt (`url` below): an attempt not followed by `_on_connected`
        # failed, and the next one goes to the next node.
        self._attempt_pending = False
        self._attempts_begin = False
        super().__init__(URL(nodes.url), **kwargs)  # reads the options of the URL once
        self._attempts_begin = True

    @property
    def url(self) -> URL:
        """aio-pika reads this once per connection attempt (its `__str__`, the other
        reader, is replaced below): the attempt's node."""
        if not self._attempts_begin:
            return URL(self._nodes.url)
        return self._next_attempt_url()

    @url.setter
    def url(self, _value: URL) -> None:
        """aio-pika assigns its URL once (and on a secret update): the nodes hold it."""

    def __str__(self) -> str:
        return self._nodes.node  # aio-pika's own log lines name the node, not the URL

    @property
    def node(self) -> str:
        return self._nodes.node

    def _next_attempt_url(self) -> URL:
        if self._attempt_pending and len(self._nodes) > 1:
            failed = self._nodes.node
            self._nodes.advance()
            log.warning("broker node not usable: trying the next", failed=failed, next=self.node)
        self._attempt_pending = True
        return URL(self._nodes.url)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # A failed attempt closes too: the next attempt's URL moves on for that one.
        if not (self._close_called or self.is_closed or self._attempt_pending):
            lost = self._nodes.node
            self._nodes.advance()
            log.warning(
                "broker connection lost: moving to the next node", lost=lost, next=self.node
            )
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        self._attempt_pending = False
        log.info("connected to the broker", broker=self.node)
        await super()._on_connected()


async def connect_any(nodes: BrokerNodes, **kwargs: Any) -> AbstractConnection:
    """A plain connection to the first node that answers (the one-shot commands)."""
    for tried in range(1, len(nodes) + 1):
        try:
            connection: AbstractConnection = await aio_pika.connect(
                nodes.url, timeout=CONNECT_SECONDS, **kwargs
            )
            return connection
        except Exception as exc:
            if tried == len(nodes):
                raise
            log.warning(
                "broker node not usable: trying the next", broker=nodes.node, error=str(exc)
            )
            nodes.advance()
    raise AssertionError("unreachable")  # pragma: no cover
