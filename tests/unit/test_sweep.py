"""The sweep with fakes: windows split below the search's 1,000-result cap, paging, the
checkpoint and its overlap, and one `user.new` per account however often it is found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signup.domain.events import UserRegistered
from signup.domain.model import CreatedAccount
from signup.service_layer.external_accounts import ExternalAccounts
from signup.service_layer.ports import SearchPage
from signup.service_layer.sweep import CHECKPOINT, Sweep
from signup.testing.fakes import FakeUnitOfWork, ManualClock

START = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
# Auth0's are 1,000 and 100; smaller here so that the fake unit of work (which copies its
# state at every run) stays quick. The walk is the same.
CAP, PER_PAGE = 50, 10


class FakeSearch:
    """The user search as Auth0 answers it: sorted by creation, inclusive bounds, and no
    page past the 1,000th result."""

    def __init__(self) -> None:
        self.accounts: list[CreatedAccount] = []
        self.calls: list[tuple[datetime, datetime, int]] = []
        self.without_email = 0

    def add(self, n: int, at: datetime, spacing: timedelta = timedelta(seconds=1)) -> None:
        base = len(self.accounts)
        for i in range(n):
            self.accounts.append(
                CreatedAccount(
                    user_id=f"google-oauth2|{base + i}",
                    email=f"u{base + i}@example.com",
                    email_verified=True,
                    created_at=at + spacing * i,
                    connection="google-oauth2",
                    is_social=True,
                )
            )

    async def created_between(
        self, start: datetime, end: datetime, *, page: int, per_page: int
    ) -> SearchPage:
        assert per_page <= PER_PAGE
        assert (page + 1) * per_page <= CAP, "past the search's result cap"
        self.calls.append((start, end, page))
        found = sorted(
            (a for a in self.accounts if start <= a.created_at <= end),
            key=lambda a: (a.created_at, a.user_id),
        )
        chunk = found[page * per_page : (page + 1) * per_page]
        return SearchPage(len(found), len(chunk) + self.without_email, chunk)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START + timedelta(hours=1))


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def search() -> FakeSearch:
    return FakeSearch()


@pytest.fixture
def sweep(search: FakeSearch, uow: FakeUnitOfWork, clock: ManualClock) -> Sweep:
    accounts = ExternalAccounts(uow=uow, clock=clock, source="urn:signup:test")
    return Sweep(search=search, accounts=accounts, uow=uow, clock=clock, per_page=PER_PAGE, cap=CAP)


def announced(uow: FakeUnitOfWork) -> list[str]:
    return sorted(
        UserRegistered.from_json(e.payload).data.user_id for e in uow.state.outbox.values()
    )


async def test_a_window_over_the_cap_is_split_until_every_account_is_reached(
    sweep: Sweep, search: FakeSearch, uow: FakeUnitOfWork
) -> None:
    search.add(130, START, spacing=timedelta(seconds=20))
    report = await sweep.run(START)
    assert len(announced(uow)) == 130
    assert report.outcomes["announced"] == 130
    assert report.windows > 1
    event = UserRegistered.from_json(next(iter(uow.state.outbox.values())).payload)
    assert event.data.origin == "sweep" and event.auth0eventid is None


async def test_a_second_sweep_finds_nothing_new(
    sweep: Sweep, search: FakeSearch, uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    search.add(30, START + timedelta(minutes=50))
    first = await sweep.run()
    assert first.outcomes["announced"] == 30
    clock.advance(30)
    second = await sweep.run()
    assert second.outcomes["announced"] == 0
    assert len(announced(uow)) == 30


async def test_each_run_starts_the_overlap_before_the_last_ones_end(
    sweep: Sweep, search: FakeSearch, uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    await sweep.run()
    assert uow.state.checkpoints[CHECKPOINT] == clock()
    ended = clock()
    # An account made just before that end, which the index did not have yet.
    search.add(1, ended - timedelta(seconds=5))
    clock.advance(120)
    report = await sweep.run()
    assert report.since == ended - sweep.overlap
    assert report.outcomes["announced"] == 1
    assert uow.state.checkpoints[CHECKPOINT] == clock()


async def test_the_first_run_looks_back_an_hour_and_since_reaches_further(
    sweep: Sweep, search: FakeSearch, uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    search.add(1, clock() - timedelta(hours=3))
    search.add(1, clock() - timedelta(minutes=10))
    first = await sweep.run()
    assert first.outcomes["announced"] == 1
    backfill = await sweep.run(clock() - timedelta(days=1))
    assert backfill.outcomes == {**backfill.outcomes, "announced": 1, "repeat": 1}
    assert len(announced(uow)) == 2


async def test_a_later_since_does_not_move_the_checkpoint_past_a_gap(
    sweep: Sweep, search: FakeSearch, uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    await sweep.run()
    kept = uow.state.checkpoints[CHECKPOINT]
    clock.advance(3600)
    await sweep.run(clock() - timedelta(minutes=1))  # skips most of the last hour
    assert uow.state.checkpoints[CHECKPOINT] == kept


async def test_users_without_an_email_are_counted_not_announced(
    sweep: Sweep, search: FakeSearch, uow: FakeUnitOfWork
) -> None:
    search.add(2, START + timedelta(minutes=30))
    search.without_email = 1
    report = await sweep.run(START)
    assert report.outcomes["unannounceable"] >= 1
    assert len(announced(uow)) == 2
