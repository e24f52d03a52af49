"""The stand-in's rate limit: a token bucket, and the `x-ratelimit-*` headers of its state.

Every Management API answer carries the three headers, as docs/auth0.md documents:
`x-ratelimit-limit`, `x-ratelimit-remaining`, and `x-ratelimit-reset` in Unix seconds.
The service paces its calls by them, so they must say what the bucket will do.

What the reset names is read two ways, and tenants have been seen to answer both:
`"full-bucket"` (the default, as Auth0's documentation has it: when the bucket is full
again) and `"next-token"` (when the next call may be made: now, rounded up, while a token
is left). `reset_means` picks one, so the client can be tested against either.

Time comes from two callables, so a test can drive it: `clock` (monotonic) times the
refill, `wall_clock` (Unix seconds) gives the reset. The defaults are `time.monotonic` and
`time.time`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal, get_args

Clock = Callable[[], float]

ResetMeans = Literal["full-bucket", "next-token"]
RESET_MEANINGS: tuple[str, ...] = get_args(ResetMeans)

# Rate-limit headers when the bucket is off.
UNLIMITED = 1_000_000


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` a second; a call takes one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        reset_means: ResetMeans = "full-bucket",
    ) -> None:
        if reset_means not in RESET_MEANINGS:
            raise ValueError(f"reset_means must be one of {', '.join(RESET_MEANINGS)}")
        self.rate = rate
        self.burst = burst
        self.reset_means = reset_means
        self.tokens = float(burst)
        self._clock = clock
        self._wall_clock = wall_clock
        self.last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def headers(self) -> dict[str, str]:
        self._refill()
        # Rounded up: at the time the header names, what it promises is there.
        if self.reset_means == "next-token":
            missing = max(0.0, 1.0 - self.tokens)
        else:
            missing = self.burst - self.tokens
        reset = math.ceil(self._wall_clock() + missing / self.rate)
        return {
            "x-ratelimit-limit": str(self.burst),
            "x-ratelimit-remaining": str(int(self.tokens)),
            "x-ratelimit-reset": str(reset),
        }


class RateLimit:
    """A `TokenBucket` when `rate` is set; else no limit, with headers that say so."""

    def __init__(
        self,
        rate: float | None,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        reset_means: ResetMeans = "full-bucket",
    ) -> None:
        self._wall_clock = wall_clock
        self.bucket = (
            TokenBucket(rate, burst, clock=clock, wall_clock=wall_clock, reset_means=reset_means)
            if rate is not None
            else None
        )

    def take(self) -> bool:
        """Whether a call may go ahead now (and, if so, count it)."""
        return self.bucket is None or self.bucket.take()

    def headers(self) -> dict[str, str]:
        if self.bucket is not None:
            return self.bucket.headers()
        return {
            "x-ratelimit-limit": str(UNLIMITED),
            "x-ratelimit-remaining": str(UNLIMITED),
            "x-ratelimit-reset": str(math.ceil(self._wall_clock())),
        }

    def exhausted_headers(self, reset_in: float | None = None) -> dict[str, str]:
        """The headers of a 429: nothing remaining; `reset_in` seconds overrides the reset."""
        headers = self.headers()
        headers["x-ratelimit-remaining"] = "0"
        if reset_in is not None:
            headers["x-ratelimit-reset"] = str(math.ceil(self._wall_clock() + reset_in))
        return headers
