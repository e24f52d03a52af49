"""The sweep: the backstop that works on every Auth0 plan. It asks the provider's user
search for accounts created since its last checkpoint and announces each one not yet
announced (`ExternalAccounts`, origin `sweep`): whatever Auth0's events missed.

The search reaches at most 1,000 results for one query, so time is walked in windows: a
window whose total is 1,000 or more is halved until each holds fewer. Each run starts
`overlap` before the last run's end, because the search index trails writes by a few
seconds; what the overlap finds again is a repeat, which costs a read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from signup import metrics
from signup.domain.events import ORIGIN_SWEEP
from signup.service_layer.external_accounts import ExternalAccounts
from signup.service_layer.ports import AccountSearch, SearchPage
from signup.service_layer.unit_of_work import Transaction, UnitOfWork

log = structlog.get_logger(__name__)

CHECKPOINT = "auth0-sweep"
RESULT_CAP = 1000
MAX_PER_PAGE = 100


@dataclass
class SweepReport:
    since: datetime
    until: datetime
    searches: int = 0
    windows: int = 0
    seen: int = 0
    outcomes: dict[str, int] = field(
        default_factory=lambda: {
            "announced": 0,
            "repeat": 0,
            "deferred": 0,
            "form": 0,
            "unannounceable": 0,
        }
    )


@dataclass
class Sweep:
    search: AccountSearch
    accounts: ExternalAccounts
    uow: UnitOfWork
    clock: Callable[[], datetime]
    # How far a run reaches back before the last one's end (the index's delay).
    overlap: timedelta = timedelta(seconds=60)
    # Where the very first run starts, without --since: accounts older than this were
    # made before the sweep was turned on (give --since to reach further back).
    first_lookback: timedelta = timedelta(hours=1)
    per_page: int = MAX_PER_PAGE
    cap: int = RESULT_CAP
    # Auth0 keeps creation times to the millisecond: a window this narrow is not split.
    narrowest: timedelta = timedelta(milliseconds=1)

    async def run(self, since: datetime | None = None) -> SweepReport:
        now = self.clock()

        async def checkpoint(tx: Transaction) -> datetime | None:
            return await tx.checkpoints.get(CHECKPOINT)

        last = await self.uow.read(checkpoint)
        if since is None:
            since = last - self.overlap if last is not None else now - self.first_lookback
        report = SweepReport(since=since, until=now)
        await self._window(since, now, report)
        if last is None or since <= last:  # everything up to `now` has been looked at

            async def advance(tx: Transaction) -> None:
                await tx.checkpoints.put(CHECKPOINT, now)

            await self.uow.run(advance)
        log.info(
            "sweep.done",
            since=since.isoformat(),
            until=now.isoformat(),
            searches=report.searches,
            seen=report.seen,
            **report.outcomes,
        )
        return report

    async def _window(self, start: datetime, end: datetime, report: SweepReport) -> None:
        report.windows += 1
        first = await self._page(start, end, 0, report)
        if first.total >= self.cap and end - start > self.narrowest:
            middle = start + (end - start) / 2
            await self._window(start, middle, report)
            await self._window(middle, end, report)  # both hold `middle`: a repeat at most
            return
        await self._announce(first, report)
        pages = min(math.ceil(first.total / self.per_page), self.cap // self.per_page)
        for page in range(1, pages):
            found = await self._page(start, end, page, report)
            await self._announce(found, report)
            if found.length < self.per_page:
                break

    async def _page(
        self, start: datetime, end: datetime, page: int, report: SweepReport
    ) -> SearchPage:
        report.searches += 1
        return await self.search.created_between(start, end, page=page, per_page=self.per_page)

    async def _announce(self, found: SearchPage, report: SweepReport) -> None:
        report.seen += found.length
        unannounceable = found.length - len(found.accounts)
        report.outcomes["unannounceable"] += unannounceable
        if unannounceable:
            metrics.SWEEP_ACCOUNTS.labels("unannounceable").inc(unannounceable)
        for account in found.accounts:
            outcome = await self.accounts.announce(account, ORIGIN_SWEEP)
            report.outcomes[outcome] += 1
            metrics.SWEEP_ACCOUNTS.labels(outcome).inc()


__all__ = ["CHECKPOINT", "Sweep", "SweepReport"]
