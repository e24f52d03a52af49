"""The broker nodes a process may use, in its own shuffled order.

`SIGNUP_AMQP_URL` may name several nodes of one RabbitMQ cluster (split by
`signup.addresses.split_amqp_urls`). Every process shuffles them once, so that
instances spread over the nodes, uses the current one and moves to the next when it
fails or cannot be reached. The publisher (aiormq) and the workers (aio-pika) share this.
Logs and `/readyz` name a node by `host:port` only: the URLs carry the password.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from signup.addresses import amqp_node, split_amqp_urls


class BrokerNodes:
    def __init__(self, urls: Sequence[str], *, rng: random.Random | None = None) -> None:
        if not urls:
            raise ValueError("no broker address")
        order = list(urls)
        (rng or random.Random()).shuffle(order)
        self._urls = tuple(order)
        self._at = 0

    @classmethod
    def parse(cls, value: str, *, rng: random.Random | None = None) -> BrokerNodes:
        """From SIGNUP_AMQP_URL's text: one URL, or several comma-separated."""
        return cls(split_amqp_urls(value), rng=rng)

    def __len__(self) -> int:
        return len(self._urls)

    @property
    def url(self) -> str:
        """The current node's URL (a secret: never log it)."""
        return self._urls[self._at]

    @property
    def node(self) -> str:
        """The current node as `host:port`."""
        return amqp_node(self.url)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node as `host:port`, in this process's order."""
        return tuple(amqp_node(url) for url in self._urls)

    def advance(self) -> str:
        """Move to the next node (after the last: the first again); its URL."""
        self._at = (self._at + 1) % len(self._urls)
        return self.url
