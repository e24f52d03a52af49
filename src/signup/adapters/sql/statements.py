"""The statements of the hot path, built once at import.

Values go in as parameters, so SQLAlchemy neither rebuilds a statement nor recomputes its
cache key on every call (docs/decisions/0002-sqlite-fast-path.md). Bound names start with
`p_`, apart from the columns' own. A status is written into the SQL, never bound
(`status_is`, docs/decisions/0003-statuses-written-into-sql.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Delete,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    update,
)

from signup.adapters import tables as t
from signup.domain.model import SignUpStatus

_s, _o = t.signups.c, t.outbox.c


def oldest_first_batch(
    table: Table, key: Column[Any], at: Column[Any], *also: ColumnElement[bool]
) -> Delete:
    """Delete the rows (`also` true) whose `at` is before `p_before`, oldest first, at most
    `p_limit` of them by their `key`. SKIP LOCKED (PostgreSQL; nothing on SQLite): two
    processes pruning at once take different rows."""
    return delete(table).where(
        key.in_(
            select(key)
            .where(*also, at < bindparam("p_before"))
            .order_by(at)
            .limit(bindparam("p_limit"))
            .with_for_update(skip_locked=True)
        )
    )


def status_is(status: SignUpStatus) -> ColumnElement[bool]:
    """`status = '<status>'` with the value written into the SQL, never bound.

    The partial indexes are over the status. A bound value that could decide whether one
    of them applies makes SQLite plan the statement again each time the value is bound,
    so at every run (docs/decisions/0003-statuses-written-into-sql.md). The values come
    from the enum, never from input.
    """
    return _s.status == literal_column(f"'{status.value}'")


def same_mailbox(email: str) -> ColumnElement[bool]:
    """Compared case-folded, as Auth0 does, so rows kept as typed before addresses were
    lower-cased still count (ux_users_email_folded is over the same expression)."""
    return func.lower(t.users.c.email) == email.lower()


SIGNUP_INSERT = insert(t.signups)
# A sign-up with a form: its consent record, one row a consent, in one executemany.
CONSENT_INSERT = insert(t.consent_records)
SIGNUP_BY_ID = select(t.signups).where(_s.id == bindparam("p_id"))
# The applicant's and the account's e-mail (the same but for case, nearly always): two
# plain parameters rather than an expanding list, so the statement compiles once.
SIGNUP_CREATED_FOR = select(t.signups).where(
    _s.email.in_([bindparam("p_email"), bindparam("p_other_email")]),
    _s.user_id == bindparam("p_user_id"),
    status_is(SignUpStatus.CREATED),
)
# One statement for each state a sign-up may be settled from, for the same reason.
SIGNUP_SETTLE = {
    expected: update(t.signups).where(_s.id == bindparam("p_id"), status_is(expected))
    for expected in SignUpStatus
}
OUTBOX_INSERT = insert(t.outbox)
# The dedupe key every announcing path reads, then writes with its outbox row.
ANNOUNCED_EVENT = select(t.announced_accounts.c.event_id).where(
    t.announced_accounts.c.user_id == bindparam("p_user_id")
)
ANNOUNCED_INSERT = insert(t.announced_accounts)
# Unpublished entries, oldest first: the relay's batch (exclusive, SQLite) or, narrowed
# to unleased rows and locked, its claim (shared, PostgreSQL).
OUTBOX_ENTRIES = select(
    _o.id, _o.event_id, _o.routing_key, _o.event_type, _o.payload, _o.created_at, _o.attempts
)
_OUTBOX_UNPUBLISHED = (
    OUTBOX_ENTRIES.where(_o.published_at.is_(None)).order_by(_o.id).limit(bindparam("p_limit"))
)
OUTBOX_UNPUBLISHED_AFTER = _OUTBOX_UNPUBLISHED.where(_o.id > bindparam("p_after"))
OUTBOX_CLAIMABLE = _OUTBOX_UNPUBLISHED.where(
    or_(_o.claimed_until.is_(None), _o.claimed_until < bindparam("p_now"))
).with_for_update(skip_locked=True)
OUTBOX_CLAIM = (
    update(t.outbox)
    .where(_o.id.in_(bindparam("p_ids", expanding=True)))
    .values(
        claimed_until=bindparam("p_until"),
        claimed_by=bindparam("p_holder"),
        attempts=_o.attempts + 1,
    )
)
# One row a parameter set, run as executemany: compiled once, where an expanding IN
# is rendered again for every batch.
OUTBOX_PUBLISHED = (
    update(t.outbox)
    .where(_o.event_id == bindparam("p_id"))
    .values(published_at=bindparam("p_at"), claimed_until=null(), last_error=null())
)

# The status on the hot endpoints (/readyz, /metrics): both read only ix_outbox_unpublished
# (partial: unpublished rows), so they cost the same however many rows were published.
OUTBOX_PENDING_COUNT = select(func.count()).where(_o.published_at.is_(None))
# The first unpublished row in outbox order: rows are written in commit order with their
# event's time, so this is the oldest pending event to within one group commit.
OUTBOX_OLDEST_PENDING = (
    select(_o.created_at).where(_o.published_at.is_(None)).order_by(_o.id).limit(1)
)
OUTBOX_PUBLISHED_COUNT = select(func.count()).where(_o.published_at.is_not(None))
# Settled sign-ups past the retention, oldest first (ix_signups_settled_at); pending ones are
# never pruned: they still wait for their outcome.
SIGNUPS_PRUNE = oldest_first_batch(
    t.signups, _s.id, _s.updated_at, ~status_is(SignUpStatus.PENDING)
)
# Published rows past the retention, oldest first, a batch at a time (ix_outbox_published_at).
OUTBOX_PRUNE = oldest_first_batch(t.outbox, _o.id, _o.published_at, _o.published_at.is_not(None))
