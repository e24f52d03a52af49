"""The clocks the Auth0 client reads, behind one seam so tests can move time by hand.

Two clocks are needed because Auth0 speaks in both: `x-ratelimit-reset` is a UNIX time
(`time`), while token lifetimes and queue deadlines are durations, measured on the event
loop's clock (`monotonic`), the one its timers run on. `signup.testing.clock.ManualClock`
is the stand-in that moves only when a test says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """UNIX time in seconds: what `x-ratelimit-reset` is compared with."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: token lifetimes, queue deadlines."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` once `delay` seconds have passed on `monotonic`."""
        ...


class LoopClock:
    """The real clocks: the system's wall clock and the running event loop's."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


__all__ = ["Clock", "LoopClock", "Timer"]
