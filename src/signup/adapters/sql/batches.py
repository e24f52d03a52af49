"""What both writers of the group commit share: a work waiting for its batch, and the
answers a batch gives (docs/decisions/0001-group-commit.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from signup.service_layer.ports import OutboxEntry
from signup.service_layer.unit_of_work import Work

log = structlog.get_logger("signup.adapters.sql")

# Per work, in the batch's order: (True, its result) or (False, its exception).
Outcome = tuple[bool, Any]
# A batch's outcomes, and the outbox rows its commit wrote (none if nothing committed).
Committed = tuple[list[Outcome], list[OutboxEntry]]


@dataclass
class Job:
    work: Work[Any]
    future: asyncio.Future[Any]


class BatchSettings(Protocol):
    """What a writer reads from its unit of work at each batch: tests and `bootstrap`
    set some of it after the unit of work is built."""

    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def max_batch(self) -> int: ...

    @property
    def on_outbox_written(self) -> Callable[[list[OutboxEntry]], None] | None: ...


def deliver(
    jobs: list[Job],
    outcomes: list[Outcome],
    written: list[OutboxEntry],
    on_outbox_written: Callable[[list[OutboxEntry]], None] | None,
) -> None:
    """Answer each work's caller; tell the relay of the outbox rows committed."""
    for job, (ok, value) in zip(jobs, outcomes, strict=True):
        if job.future.done():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
    if written and on_outbox_written is not None:
        try:
            on_outbox_written(written)
        except Exception:  # the rows are committed: the relay's poll finds them
            log.exception("uow.outbox_notice_failed")
