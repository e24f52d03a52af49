"""Reconciliation on its own schedule, beside the relay, never inside its loop.

Inside the relay's loop a round held up publishing for as long as it took: up to 500
provider look-ups, each allowed `SIGNUP_AUTH0_TIMEOUT_SECONDS`, while no event went
out (issue 18, item 4). Here a round is a task of its own every
`SIGNUP_RECONCILE_EVERY_SECONDS`: the relay publishes meanwhile, and a slow provider
delays only the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from signup.service_layer.ports import Timers
from signup.service_layer.relay import LoopTimers

log = structlog.get_logger(__name__)


def always() -> bool:
    return True


@dataclass
class Reconciler:
    reconcile: Callable[[], Awaitable[object]]
    every: float = 60.0
    # Asked before each round: on SQLite only the publishing relay's process reconciles
    # (as before), so that standing-by processes do not ask the provider too.
    may_run: Callable[[], bool] = always
    timers: Timers = field(default_factory=LoopTimers)
    rounds: int = field(default=0, init=False)

    async def run(self, stop: asyncio.Event) -> None:
        """A round every `every` seconds (the first one period after the start) until
        `stop`; a round under way when `stop` comes is cancelled: what it settled is
        settled, what it did not is still pending for the next start."""
        while await self._wait(stop):
            if not self.may_run():
                continue
            round_ = asyncio.ensure_future(self.reconcile())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({round_, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not round_.done():  # stopped, or this task cancelled
                    round_.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await round_
            if round_.cancelled():
                return
            self.rounds += 1
            if (error := round_.exception()) is not None:
                log.error("reconcile.round_failed", error=f"{type(error).__name__}: {error}"[:300])

    async def _wait(self, stop: asyncio.Event) -> bool:
        """Wait a period, or until `stop`; False once stopped."""
        if stop.is_set():
            return False
        woken = asyncio.get_running_loop().create_future()

        def rouse(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.timers.call_later(self.every, rouse)
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(rouse)
        try:
            await woken
        finally:
            timer.cancel()
            stopping.cancel()
        return not stop.is_set()


__all__ = ["Reconciler"]
