"""The manual clock the Auth0 client's tests drive: timers run at their time, in order."""

from __future__ import annotations

import pytest

from signup.testing.clock import ManualClock


def test_both_clocks_move_only_when_told() -> None:
    clock = ManualClock(wall=1_000.0)
    assert (clock.time(), clock.monotonic()) == (1_000.0, 0.0)

    clock.advance(2.5)

    assert (clock.time(), clock.monotonic()) == (1_002.5, 2.5)
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1.0)


def test_due_timers_run_in_order_at_their_own_time() -> None:
    clock = ManualClock(wall=0.0)
    ran: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: ran.append(("late", clock.monotonic())))
    clock.call_later(1.0, lambda: ran.append(("early", clock.monotonic())))
    clock.call_later(1.0, lambda: ran.append(("early-second", clock.monotonic())))
    clock.call_later(5.0, lambda: ran.append(("not-yet", clock.monotonic())))

    clock.advance(0.99)
    assert ran == []
    clock.advance(1.01)

    assert ran == [("early", 1.0), ("early-second", 1.0), ("late", 2.0)]
    assert clock.monotonic() == 2.0
    assert clock.timers == 1


def test_a_cancelled_timer_never_runs_and_one_set_by_a_callback_can() -> None:
    clock = ManualClock(wall=0.0)
    ran: list[str] = []
    clock.call_later(1.0, lambda: ran.append("cancelled")).cancel()

    def chain() -> None:
        clock.call_later(0.5, lambda: ran.append("chained"))

    clock.call_later(1.0, chain)

    clock.advance(2.0)

    assert ran == ["chained"]
    assert clock.timers == 0
