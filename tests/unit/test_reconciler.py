"""The reconciler's schedule, beside the relay: its own period, its own task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from signup.service_layer.reconciliation import Reconciler
from signup.testing.clock import ManualClock as ManualTimers


async def turns(condition: Callable[[], bool], limit: int = 1000) -> None:
    """Run the loop until `condition` holds (turns of the loop, not time)."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_a_round_every_period_only_while_it_may_run() -> None:
    timers, rounds, leading = ManualTimers(), [0], [True]

    async def reconcile() -> None:
        rounds[0] += 1

    reconciler = Reconciler(reconcile, every=60, may_run=lambda: leading[0], timers=timers)
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop))
    await turns(lambda: timers.timers == 1)
    assert rounds[0] == 0, "the first round comes one period after the start"
    timers.advance(60)
    await turns(lambda: rounds[0] == 1 and timers.timers == 1)
    leading[0] = False  # standing by (another process publishes on this SQLite file)
    timers.advance(60)
    await turns(lambda: timers.timers == 1 and reconciler.rounds == 1)
    await asyncio.sleep(0)
    assert rounds[0] == 1
    stop.set()
    await task


async def test_a_failed_round_is_logged_and_the_next_one_comes() -> None:
    timers, calls = ManualTimers(), [0]

    async def reconcile() -> None:
        calls[0] += 1
        raise RuntimeError("provider down")

    reconciler = Reconciler(reconcile, every=1, timers=timers)
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop))
    for expected in (1, 2):
        await turns(lambda: timers.timers == 1)
        timers.advance(1)
        await turns(lambda e=expected: calls[0] == e)
    stop.set()
    await task
    assert reconciler.rounds >= 1


async def test_stop_cancels_a_round_waiting_on_the_provider() -> None:
    timers, entered, cancelled = ManualTimers(), asyncio.Event(), asyncio.Event()

    async def reconcile() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # a look-up that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise

    reconciler = Reconciler(reconcile, every=1, timers=timers)
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop))
    await turns(lambda: timers.timers == 1)
    timers.advance(1)
    await entered.wait()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert cancelled.is_set()
