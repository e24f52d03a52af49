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
# A reset this far ahead while tokens are left cannot be the next token's (that is now,
# rounded up to the second): it is the full bucket's. One second for the rounding, one
# for the clocks' skew.
_FULL_BUCKET_AHEAD: Final = 2.0


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[int]  # the ticket, once granted
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

    It models the tenant's token bucket from each answer's `x-ratelimit-limit`,
    `-remaining` and `-reset`: the tokens it may still spend (one granted call takes one)
    and the rate at which they come back, learned from how `remaining` moves between
    answers. When none is left (or a 429 came) calls wait in arrival order, each going out
    once the model has a token again (at the learned rate) or the reset has passed, each
    at most until its own deadline; one that would have to wait past it is refused at
    once with `ProviderUnavailable(retry_after=seconds until the next slot)`.

    The reset is read for what both of its readings promise: Auth0's documentation says
    the bucket is full again then, some tenants answer when the next call may be made.
    Either way at least one token is back by the reset, so one call goes then; the
    remaining in its answer says whether more did. The refill rate is never read from
    the reset (a whole bucket or a single token in that time): it is a lower bound from
    answers at quiet moments (nothing in flight): tokens gained between two of them are
    more than `remaining` later - `remaining` before - 1 + the calls taken between. A 429
    (another client sharing the bucket, or a changed plan) halves it and starts again.

    Until the first answer says how the tenant is metered, one call goes out alone and
    the others wait for its headers. An API that sends no rate-limit headers is not paced.

    Every `acquire` that returned must be matched by exactly one `release`, given the
    ticket `acquire` returned.

    Counters for metrics: `waits` (calls that had to queue), `refused` (calls turned
    away with 503 because the wait would pass their deadline), `limited` (429 answers
    received), and the last known `limit`, `remaining` (the estimate), `reset_at`,
    `rate` (learned tokens a second, None until known).
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or LoopClock()
        self.limit: int | None = None
        self.reset_at: float | None = None  # UNIX time by which a token is back
        self.rate: float | None = None
        self.waits = 0
        self.refused = 0
        self.limited = 0
        self._metered: bool | None = None  # None: not known yet
        self._probing = False
        self._in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._timer: Timer | None = None
        # The model of the bucket: tokens we may still spend, as of `_tokens_at`.
        self._tokens: float | None = None
        self._tokens_at = 0.0
        self._tickets = 0  # calls granted so far; a call's ticket is its number
        self._granted_wall: dict[int, float] = {}  # UNIX time each call in flight went
        self.full_bucket_reset = False  # the tenant's reset seen to be the full bucket's
        self._last_grant_at = 0.0
        # Learning the rate: a quiet moment to measure from (monotonic time, remaining,
        # calls taken since), and the answers since the last quiet moment.
        self._anchor: tuple[float, int] | None = None
        self._taken_since_anchor = 0
        self._batch_min: int | None = None
        self._batch_taken = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    @property
    def remaining(self) -> int | None:
        if self._tokens is None:
            return None
        self._refill()
        return max(0, int(self._tokens))

    # -- taking a slot -----------------------------------------------------------------

    def _refill(self) -> None:
        now = self._clock.monotonic()
        if (
            self._tokens is not None
            and self.rate
            and self.limit is not None
            and self._tokens < self.limit
        ):
            gained = (now - self._tokens_at) * self.rate
            self._tokens = min(float(self.limit), self._tokens + gained)
        self._tokens_at = now

    def _grant(self) -> int:
        self._in_flight += 1
        self._tickets += 1
        self._last_grant_at = self._clock.monotonic()
        self._granted_wall[self._tickets] = self._clock.time()
        return self._tickets

    def _try_take(self) -> int | None:
        """A ticket when a call may go now, else None."""
        if self._metered is False:
            return self._grant()
        if self._metered is None or self._tokens is None:
            # Nothing known yet: one call at a time finds out.
            if self._probing:
                return None
            self._probing = True
            return self._grant()
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return self._grant()
        if self.reset_at is not None and self._clock.time() >= self.reset_at:
            # Both readings of the reset promise a token by now, the full bucket's all
            # of them; else one call spends it and its answer says whether more came.
            self._tokens = self.limit - 1.0 if self.full_bucket_reset and self.limit else 0.0
            self.reset_at = None
            return self._grant()
        if self.reset_at is None and self._in_flight == 0:
            # Nothing in flight will tell us more: let one go and find out.
            return self._grant()
        return None

    def _blocked_for(self) -> float | None:
        """Seconds until the model lets the next call go, when calls are held; else None."""
        if not self._metered or self._tokens is None:
            return None
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        waits: list[float] = []
        if self.rate:
            waits.append((1.0 - self._tokens) / self.rate)
        if self.reset_at is not None:
            waits.append(max(0.0, self.reset_at - self._clock.time()))
        return min(waits) if waits else None

    async def acquire(self, deadline: float, *, first: bool = False) -> int:
        """Wait for a slot until `deadline` (on the clock's `monotonic`); the call's ticket.

        `first` puts a retry at the front.
        """
        queue = self._queue
        while queue and queue[0].future.done():
            queue.popleft()
        if first or not queue:
            ticket = self._try_take()
            if ticket is not None:
                return ticket
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
            return await waiter.future
        except asyncio.CancelledError:
            if self._granted(waiter):
                self.release(None, ticket=waiter.future.result())
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

    def release(
        self,
        headers: Mapping[str, str] | None,
        status: int | None = None,
        *,
        ticket: int | None = None,
    ) -> None:
        """Account for a finished call: `headers` of its answer, None when none came.

        `ticket` (what `acquire` returned) tells how many calls were granted after this
        one, which its `remaining` does not count yet; without it, those in flight.
        """
        self._in_flight -= 1
        self._probing = False
        if status == 429:
            self.limited += 1
        granted_wall = self._granted_wall.pop(ticket, None) if ticket is not None else None
        if headers is not None:
            later = self._in_flight if ticket is None else self._tickets - ticket
            self._learn(headers, status, later, granted_wall)
        if self._queue:
            self._pump()

    def _learn(
        self,
        headers: Mapping[str, str],
        status: int | None,
        later: int,
        granted_wall: float | None = None,
    ) -> None:
        limit = header_int(headers, "x-ratelimit-limit")
        remaining = header_int(headers, "x-ratelimit-remaining")
        reset = header_int(headers, "x-ratelimit-reset")
        wall = self._clock.time()
        if remaining is None or reset is None:
            if status == 429:
                self._metered = True
                self._limited_until(wall + _MIN_LIMITED_WAIT)
            elif self._metered is None:
                self._metered = False  # this API does not say: do not pace it
            return
        self._metered = True
        if limit is not None and limit != self.limit:
            if self.limit is not None:  # another plan: its rate is learned anew
                self.rate = None
                self.full_bucket_reset = False
                self._forget_anchor()
            self.limit = limit
        if status == 429:
            self._limited_until(float(reset) if reset > wall else wall + _MIN_LIMITED_WAIT)
            return
        self._refill()
        # The answer counts the calls taken before it, not those granted after it (each
        # takes at most one): at least `remaining - later` are ours to spend, and never
        # more than `remaining` (the model may be ahead of a slower bucket).
        floor = float(remaining - later)
        model = floor if self._tokens is None else self._tokens
        self._tokens = max(floor, min(model, float(remaining)))
        self._later_reset(float(reset), wall)
        self._read_full_bucket(remaining, float(reset), wall, granted_wall)
        self._observe(remaining)

    def _read_full_bucket(
        self, remaining: int, reset: float, wall: float, granted_wall: float | None
    ) -> None:
        """When the reset is the full bucket's, one answer bounds the rate from below.

        The bucket held fewer than `remaining + 1` tokens when the call was taken (no
        earlier than it was granted) and holds `limit` by the reset: it gains
        `limit - remaining - 1` in at most `reset - granted`.
        """
        limit = self.limit
        if limit is None or remaining >= limit - 1:
            return
        if remaining >= 1 and reset - wall >= _FULL_BUCKET_AHEAD:
            self.full_bucket_reset = True
        if not self.full_bucket_reset or granted_wall is None or reset <= granted_wall:
            return
        bound = (limit - remaining - 1) / (reset - granted_wall)
        if bound > 0:
            self.rate = max(self.rate or 0.0, bound)

    def _limited_until(self, reset_at: float) -> None:
        """A 429: nothing is left, and the learned rate was more than we get."""
        self._tokens = 0.0
        self._tokens_at = self._clock.monotonic()
        self._later_reset(reset_at, self._clock.time())
        if self.rate is not None:
            self.rate /= 2
        self._forget_anchor()

    def _later_reset(self, reset_at: float, wall: float) -> None:
        # Answers arrive out of order; a reset still ahead is only ever pushed later,
        # since a call taken later sees the later one.
        if self.reset_at is None or self.reset_at <= wall or reset_at > self.reset_at:
            self.reset_at = reset_at

    def _forget_anchor(self) -> None:
        self._anchor = None
        self._taken_since_anchor = 0
        self._batch_min = None
        self._batch_taken = 0

    def _observe(self, remaining: int) -> None:
        """Learn the refill rate from `remaining` at quiet moments (nothing in flight).

        A quiet moment sees the bucket after every call granted so far was taken, with
        at most the smallest `remaining` since the last one (each take lowers it; a
        refill between only makes that an underestimate). Between two quiet moments the
        bucket gained more than `remaining` now - `remaining` then - 1 + the calls taken,
        over at most the time from the earlier moment's last grant to now: a lower bound
        of the rate, as a full bucket only gains less.
        """
        self._batch_taken += 1
        if self._batch_min is None or remaining < self._batch_min:
            self._batch_min = remaining
        if self._in_flight:
            return
        low, taken = self._batch_min, self._batch_taken
        self._batch_min, self._batch_taken = None, 0
        anchor = self._anchor
        if anchor is not None:
            self._taken_since_anchor += taken
            since, before = anchor
            elapsed = self._clock.monotonic() - since
            gained = low - before - 1 + self._taken_since_anchor
            if elapsed > 0 and gained > 0:
                self.rate = max(self.rate or 0.0, gained / elapsed)
        if anchor is None or (self.limit is not None and low >= self.limit - 1):
            # A bucket that may be full gains nothing more: measure from here on.
            self._anchor = (self._last_grant_at, low)
            self._taken_since_anchor = 0

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
            ticket = self._try_take()
            if ticket is None:
                break
            queue.popleft()
            waiter.future.set_result(ticket)
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
        self._granted_wall.clear()


__all__ = ["RateGate", "header_int"]
