"""Which fault, if any, a create call gets: a seeded roll against the configured shares.

The roll is seeded (`StandinConfig.seed`) so that a fault run can be repeated call for
call; `Auth0Standin` restarts the sequence on `reset()` and when the seed changes. What
each fault does to the answer is in `Auth0Standin._create_answer` (app.py):

- `500`, `503`: answered at once, nothing created;
- `429`: a rate-limit answer whose reset is `share_429_reset_seconds` away;
- `slow`: `slow_seconds` of waiting, then the call as usual;
- `create_then_hang`: the user is created, the answer comes `hang_seconds` later (a
  client with a shorter timeout never sees it);
- `create_then_500`: the user is created, the answer is a 500.
"""

from __future__ import annotations

import random

from .config import FAULT_SHARES, StandinConfig


class FaultDice:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def roll(self, config: StandinConfig) -> str | None:
        """The fault for this call (`500`, `slow`, `create_then_hang`, …) or None."""
        roll = self._rng.random()
        edge = 0.0
        for name in FAULT_SHARES:
            edge += getattr(config, name)
            if roll < edge:
                return name.removeprefix("share_")
        return None
