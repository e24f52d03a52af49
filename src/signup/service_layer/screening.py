"""The abuse controls a valid sign-up passes before any account is asked for: the mail
domain rule and the breached-password check (docs/abuse.md).

`Screening.check` raises `FieldsRefused` with every field at fault (one round trip fixes
them all), or `PasswordCheckUnavailable` when the breached-password look-up failed and
the site is set to refuse then (`SIGNUP_BREACHED_FAIL=closed`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from signup import metrics
from signup.domain.breached import (
    BREACHED,
    BREACHED_MESSAGE,
    MalformedRange,
    compact_range,
    range_key,
    times_seen,
)
from signup.domain.email_domains import DomainRule
from signup.domain.errors import FieldRejected, FieldsRefused, PasswordCheckUnavailable
from signup.service_layer.ports import PasswordRanges, RangeUnavailable

log = structlog.get_logger(__name__)


@dataclass
class BreachCheck:
    """Asks a range API how often a password was seen in breaches; never sends more
    than the first five hex digits of its SHA-1.

    Answers are cached per prefix for `cache_seconds` (at most `cache_size` ranges, the
    least recently used leave first), and concurrent sign-ups whose passwords share a
    prefix wait on one look-up: a burst of the same password costs one request.
    """

    ranges: PasswordRanges
    min_count: int = 1
    fail_closed: bool = False
    cache_seconds: float = 300.0
    cache_size: int = 1024
    retry_after: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _cache: OrderedDict[str, tuple[float, str]] = field(default_factory=OrderedDict, repr=False)
    _in_flight: dict[str, asyncio.Future[str]] = field(default_factory=dict, repr=False)

    async def refusal(self, password: str) -> FieldRejected | None:
        """`FieldRejected` (`password.breached`) when the password was seen at least
        `min_count` times; None when not, or when unknown and the check fails open."""
        prefix, suffix = range_key(password)
        try:
            compact = await self._range(prefix)
        except RangeUnavailable as exc:
            if self.fail_closed:
                metrics.BREACHED_CHECKS.labels("unavailable_closed").inc()
                log.warning("breached.unavailable", fail="closed", reason=str(exc))
                raise PasswordCheckUnavailable(str(exc), self.retry_after) from None
            metrics.BREACHED_CHECKS.labels("unavailable_open").inc()
            log.warning("breached.unavailable", fail="open", reason=str(exc))
            return None
        if times_seen(compact, suffix) >= self.min_count:
            metrics.BREACHED_CHECKS.labels("breached").inc()
            return FieldRejected("password", BREACHED_MESSAGE, code=BREACHED)
        metrics.BREACHED_CHECKS.labels("clean").inc()
        return None

    async def _range(self, prefix: str) -> str:
        now = self.clock()
        cached = self._cache.get(prefix)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(prefix)
            metrics.BREACHED_LOOKUPS.labels("cached").inc()
            return cached[1]
        pending = self._in_flight.get(prefix)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up(prefix))
            self._in_flight[prefix] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(prefix, None))
        else:
            metrics.BREACHED_LOOKUPS.labels("shared").inc()
        # One caller cancelled (its client went away) must not cancel the others' wait.
        return await asyncio.shield(pending)

    async def _look_up(self, prefix: str) -> str:
        try:
            compact = compact_range(await self.ranges.range(prefix))
        except MalformedRange as exc:
            metrics.BREACHED_LOOKUPS.labels("failed").inc()
            raise RangeUnavailable(str(exc)) from None
        except RangeUnavailable:
            metrics.BREACHED_LOOKUPS.labels("failed").inc()
            raise
        metrics.BREACHED_LOOKUPS.labels("fetched").inc()
        self._cache[prefix] = (self.clock() + self.cache_seconds, compact)
        self._cache.move_to_end(prefix)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return compact


@dataclass
class Screening:
    domains: DomainRule = field(default_factory=DomainRule)
    breached: BreachCheck | None = None

    async def check(self, email: str, password: str) -> None:
        """Raise `FieldsRefused` when a control refuses a field; nothing is recorded."""
        rejections: list[FieldRejected] = []
        domain = self.domains.refusal(email)
        if domain is not None:
            rejections.append(FieldRejected(domain.field, domain.message, code=domain.code))
        # A refused address ends it: no look-up is spent on a sign-up refused anyway.
        elif self.breached is not None:
            breached = await self.breached.refusal(password)
            if breached is not None:
                rejections.append(breached)
        if rejections:
            raise FieldsRefused(tuple(rejections))
