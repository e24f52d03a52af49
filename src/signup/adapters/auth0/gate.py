"""Pacing Management API calls to the tenant's rate limit, read from `x-ratelimit-*`."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from signup import metrics
from signup.adapters.auth0.clock import Clock, LoopClock, Timer
from signup.adapters.auth0.retry_hints import RETRY_BUSY, RETRY_OUTAGE
from signup.domain.errors import ProviderUnavailable

# A 429 whose reset is already past (clock skew, one-second granularity) waits this long.
_MIN_LIMITED_WAIT: Final = 1.0


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[None]
    deadline: float  # on the gate's monotonic clock


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class RateGate:
    """Holds Management API calls to the tenant's rate limit, first come first served.

    It learns the limit from each answer's `x-ratelimit-limit`, `-remaining` and `-reset`
    (UNIX epoch seconds when the bucket is full again) and keeps its own estimate of the
    calls it may still send: one granted call takes one from it. When none is left (or a
    429 came) calls wait in arrival order until the reset, each at most until its own
    deadline; one that would have to wait past it is refused at once with
    `ProviderUnavailable(retry_after=seconds until the reset)`.

    Until the first answer says how the tenant is metered, one call goes out alone and
    the others wait for its headers. An API that sends no rate-limit headers is not paced.

    Every `acquire` that returned must be matched by exactly one `release`.

    Counters for metrics: `waits` (calls that had to queue), `refused` (calls turned
    away with 503 because the wait would pass their deadline), `limited` (429 answers
    received), and the last known `limit`, `remaining` (the estimate), `reset_at`.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or LoopClock()
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.waits = 0
        self.refused = 0
        self.limited = 0
        self._metered: bool | None = None  # None: not known yet
        self._probing = False
        self._in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._timer: Timer | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    # -- taking a slot -----------------------------------------------------------------

    def _try_take(self) -> bool:
        if self._metered is False:
            self._in_flight += 1
            return True
        if self._metered is None or self.remaining is None:
            # Nothing known yet: one call at a time finds out.
            if self._probing:
                return False
            self._probing = True
            self._in_flight += 1
            return True
        if self.remaining > 0:
            self.remaining -= 1
            self._in_flight += 1
            return True
        if self.reset_at is not None and self._clock.time() >= self.reset_at:
            # The bucket has refilled; spend it, and learn the next reset from answers.
            self.remaining = (self.limit or 1) - 1
            self.reset_at = None
            self._in_flight += 1
            return True
        if self.reset_at is None and self._in_flight == 0:
            # Nothing in flight will tell us more: let one go and find out.
            self._in_flight += 1
            return True
        return False

    def _blocked_for(self) -> float | None:
        """Seconds until the known reset, when calls are held for it; else None."""
        if (
            self._metered
            and self.remaining is not None
            and self.remaining <= 0
            and self.reset_at is not None
        ):
            return max(0.0, self.reset_at - self._clock.time())
        return None

    async def acquire(self, deadline: float, *, first: bool = False) -> None:
        """Wait for a slot until `deadline` (on the clock's `monotonic`).

        `first` puts a retry at the front.
        """
        queue = self._queue
        while queue and queue[0].future.done():
            queue.popleft()
        if (first or not queue) and self._try_take():
            return
        loop = asyncio.get_running_loop()
        now = self._clock.monotonic()
        wait = self._blocked_for()
        if wait is not None and now + wait > deadline:
            self.refused += 1
            raise ProviderUnavailable(
                "Auth0 rate limit: the wait for the next slot exceeds the queue deadline",
                retry_after=max(wait, RETRY_BUSY),
            )
        waiter = _Waiter(loop.create_future(), deadline)
        if first:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        self.waits += 1
        metrics.RATE_LIMIT_WAITS.inc()
        self._arm(wait)
        expiry = self._clock.call_later(deadline - now, lambda: self._expire(waiter))
        try:
            await waiter.future
        except asyncio.CancelledError:
            if self._granted(waiter):
                self.release(None)
            raise
        finally:
            expiry.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        """The waiter's deadline came first; a grant in the same instant wins."""
        if waiter.future.done():
            return
        self.refused += 1
        blocked = self._blocked_for()
        waiter.future.set_exception(
            ProviderUnavailable(
                "Auth0 rate limit: no slot within the queue deadline",
                retry_after=max(blocked or 0.0, RETRY_BUSY),
            )
        )

    @staticmethod
    def _granted(waiter: _Waiter) -> bool:
        fut = waiter.future
        return fut.done() and not fut.cancelled() and fut.exception() is None

    # -- giving it back ----------------------------------------------------------------

    def release(self, headers: Mapping[str, str] | None, status: int | None = None) -> None:
        """Account for a finished call: `headers` of its answer, None when none came."""
        self._in_flight -= 1
        self._probing = False
        if status == 429:
            self.limited += 1
        if headers is not None:
            self._learn(headers, status)
        if self._queue:
            self._pump()

    def _learn(self, headers: Mapping[str, str], status: int | None) -> None:
        limit = header_int(headers, "x-ratelimit-limit")
        remaining = header_int(headers, "x-ratelimit-remaining")
        reset = header_int(headers, "x-ratelimit-reset")
        now = self._clock.time()
        if remaining is None or reset is None:
            if status == 429:
                self._metered = True
                self.remaining = 0
                self.reset_at = now + _MIN_LIMITED_WAIT
            elif self._metered is None:
                self._metered = False  # this API does not say: do not pace it
            return
        self._metered = True
        if limit is not None:
            self.limit = limit
        if status == 429:
            estimate = 0
            reset_at = float(reset) if reset > now else now + _MIN_LIMITED_WAIT
        else:
            # Calls still in flight are not counted in this answer yet.
            estimate = max(0, remaining - self._in_flight)
            reset_at = float(reset)
            if self.remaining is not None and self.reset_at == reset_at:
                estimate = min(estimate, self.remaining)
        self.remaining = estimate
        self.reset_at = reset_at

    # -- waking waiters ----------------------------------------------------------------

    def _pump(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue = self._queue
        while queue:
            waiter = queue[0]
            if waiter.future.done():
                queue.popleft()
                continue
            if not self._try_take():
                break
            queue.popleft()
            waiter.future.set_result(None)
        if not queue:
            return
        wait = self._blocked_for()
        if wait is None:
            return  # an answer in flight will pump again
        limit_at = self._clock.monotonic() + wait
        kept: deque[_Waiter] = deque()
        for waiter in queue:
            if waiter.future.done():
                continue
            if limit_at > waiter.deadline:
                self.refused += 1
                waiter.future.set_exception(
                    ProviderUnavailable(
                        "Auth0 rate limit: the wait for the next slot exceeds the queue deadline",
                        retry_after=max(wait, RETRY_BUSY),
                    )
                )
            else:
                kept.append(waiter)
        self._queue = kept
        self._arm(wait)

    def _arm(self, wait: float | None) -> None:
        if wait is None or self._timer is not None:
            return
        self._timer = self._clock.call_later(wait + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._queue:
            self._pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._queue:
            if not waiter.future.done():
                waiter.future.set_exception(
                    ProviderUnavailable("Auth0 client closed", retry_after=RETRY_OUTAGE)
                )
        self._queue.clear()


__all__ = ["RateGate", "header_int"]
