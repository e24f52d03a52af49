"""An Event Stream with a webhook destination: each user the stand-in makes is POSTed as
a `user.created` CloudEvent to `stream_url` with `Authorization: Bearer stream_token`,
as Auth0 delivers them (docs/auth0.md): at least once (a share sent twice), out of order
(each held back up to `stream_max_delay`), and again after any answer but a 2xx or when
no answer came, until one is a 2xx (the delay doubling from `stream_retry_seconds`, to 2 s
at most)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from .config import StandinConfig

MAX_RETRY_DELAY = 2.0


def cloud_event(user: dict[str, Any], domain: str) -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(11)}",
        "source": f"urn:auth0:{domain}:users",
        "specversion": "1.0",
        "type": "user.created",
        "time": user["created_at"],
        "data": {"object": user},
    }


@dataclass
class StreamCounters:
    events: int = 0  # one per user made
    attempts: int = 0
    delivered: int = 0  # 2xx answers (duplicates included)
    statuses: Counter[str] = field(default_factory=Counter)  # status, or "no answer"


class EventStream:
    def __init__(self, random_seed: int = 0) -> None:
        self.counters = StreamCounters()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._random = random.Random(random_seed)
        self.sent: list[dict[str, Any]] = []  # every event, once each

    def emit(self, user: dict[str, Any], config: StandinConfig) -> None:
        """Queue `user.created` for `user` (nothing when no stream is configured)."""
        if not config.stream_url:
            return
        event = cloud_event(user, config.domain)
        self.sent.append(event)
        self.counters.events += 1
        copies = 2 if self._random.random() < config.stream_share_duplicate else 1
        for _ in range(copies):
            delay = self._random.random() * config.stream_max_delay
            task = asyncio.get_running_loop().create_task(self._deliver(event, delay, config))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drained(self) -> None:
        """Wait until every delivery got its 2xx (callers bound it with a time-out)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, event: dict[str, Any], delay: float, config: StandinConfig) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = orjson.dumps(event)
        headers = {"Content-Type": "application/json"}
        if config.stream_token:
            headers["Authorization"] = f"Bearer {config.stream_token}"
        wait = config.stream_retry_seconds
        while True:
            self.counters.attempts += 1
            try:
                assert config.stream_url is not None
                async with self._session.post(config.stream_url, data=body, headers=headers) as r:
                    await r.read()
                    self.counters.statuses[str(r.status)] += 1
                    if 200 <= r.status < 300:
                        self.counters.delivered += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                self.counters.statuses["no answer"] += 1
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_RETRY_DELAY)
