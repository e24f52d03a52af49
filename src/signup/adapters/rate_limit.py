"""Per-address and per-e-mail attempt limits (the `limits` library; memory or Redis)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


class AttemptLimiter(Protocol):
    async def hit(self, scope: str, key: str) -> float | None:
        """Count an attempt; the seconds to wait when over the limit, else None."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Rule:
    scope: str
    items: list[RateLimitItem]


class LimitsAttemptLimiter:
    def __init__(
        self, rules: dict[str, str], storage_url: str | None, prefix: str = "signup"
    ) -> None:
        self._rules = {
            scope: parse_many(spec) for scope, spec in rules.items() if spec and spec.strip()
        }
        if storage_url:
            storage_url = storage_url.replace("redis://", "async+redis://", 1).replace(
                "rediss://", "async+rediss://", 1
            )
        storage = storage_from_string(storage_url or "async+memory://")
        assert isinstance(storage, Storage), "an async+ storage URL is needed"
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._prefix = prefix

    async def hit(self, scope: str, key: str) -> float | None:
        items = self._rules.get(scope)
        if not items:
            return None
        # E-mail addresses are personal data: the shared store only sees a digest.
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        wait: float | None = None
        for item in items:
            if not await self._limiter.hit(item, self._prefix, scope, digest):
                stats = await self._limiter.get_window_stats(item, self._prefix, scope, digest)
                seconds = max(1.0, stats.reset_time - time.time())
                wait = max(wait or 0.0, seconds)
        return wait

    async def close(self) -> None:
        return None
