"""A clock for tests that moves only when told, so waits on time pass without sleeping.

It fits `signup.adapters.auth0.clock.Clock`: give it to `Auth0IdentityProvider(clock=…)`
and `advance()` past a token's lifetime or a rate-limit reset instead of waiting for it.
Its wall clock starts at the real time, so UNIX times that a server puts in its answers
(`x-ratelimit-reset`) compare with it as they would with the real one.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    def __init__(self, *, wall: float | None = None) -> None:
        self._wall_at_start = time.time() if wall is None else wall
        self._elapsed = 0.0
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._wall_at_start + self._elapsed

    def monotonic(self) -> float:
        return self._elapsed

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self._elapsed + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    @property
    def timers(self) -> int:
        """Timers set and not yet run or cancelled."""
        return sum(1 for t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move both clocks on; run, in order and at their own times, the timers now due.

        Callbacks run inside this call; a timer they set that falls due by the new time
        runs too.
        """
        if seconds < 0:
            raise ValueError("a clock does not go back")
        target = self._elapsed + seconds
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._elapsed = max(self._elapsed, timer.when)
            timer.callback()
        self._elapsed = target


__all__ = ["ManualClock"]
