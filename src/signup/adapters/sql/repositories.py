"""The SQL repositories: the ports of `signup.service_layer.ports` on SQLAlchemy.

The same code runs on PostgreSQL (an `AsyncConnection`, asyncpg) and on SQLite (an
`InlineConnection`, whose awaits never suspend: docs/decisions/0002-sqlite-fast-path.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from signup.adapters import tables as t
from signup.adapters.sql import statements as st
from signup.adapters.sql.attempt_notices import SqlAttemptNotices
from signup.adapters.sql.challenges import SqlSpentChallenges
from signup.adapters.sql.sqlite_fast import Changed, InlineConnection
from signup.domain.errors import (
    AccountAlreadyAnnounced,
    AccountAlreadyCompleted,
    EmailAlreadyRegistered,
    RequestInProgress,
)
from signup.domain.events import OutboxEvent
from signup.domain.form import ConsentRecord
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.ports import OutboxEntry, OutboxStatus, Sighting

AnyConnection = AsyncConnection | InlineConnection


def _profile_to_json(profile: dict[str, object] | None) -> str | None:
    return None if profile is None else orjson.dumps(profile).decode()


def _applicant_from_row(row: Any) -> Applicant:
    if not row.profile:
        return Applicant(row.email, row.given_name, row.family_name)
    profile = orjson.loads(row.profile)
    consents = tuple(
        ConsentRecord(
            c["id"],
            c["version"],
            bool(c["accepted"]),
            datetime.fromisoformat(c["at"]),
            c["language"],
            c["text_sha256"],
            bool(c.get("marketing", False)),
        )
        for c in profile.get("consents", [])
    )
    fields = tuple((str(k), v) for k, v in profile.get("fields", {}).items())
    return Applicant(row.email, row.given_name, row.family_name, fields=fields, consents=consents)


def _signup_from_row(row: Any) -> SignUp:
    return SignUp(
        id=row.id,
        applicant=_applicant_from_row(row),
        status=SignUpStatus(row.status),
        provider=row.provider,
        requested_at=row.requested_at,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint,
        user_id=row.user_id,
        event_id=row.event_id,
        response_status=row.response_status,
        response_body=orjson.loads(row.response_body) if row.response_body else None,
    )


def _entry_from_row(row: Any, attempts: int) -> OutboxEntry:
    return OutboxEntry(
        row.event_id,
        row.routing_key,
        row.event_type,
        row.payload.encode(),
        row.created_at,
        attempts,
        row.id,
    )


_FIXED_AT_ADD = (
    "email",
    "given_name",
    "family_name",
    "provider",
    "fingerprint",
    "requested_at",
    "profile",
)


def _signup_values(signup: SignUp, now: datetime) -> dict[str, Any]:
    return {
        "email": signup.applicant.email,
        "given_name": signup.applicant.given_name,
        "family_name": signup.applicant.family_name,
        "profile": _profile_to_json(signup.applicant.profile()),
        "status": signup.status.value,
        "provider": signup.provider,
        "requested_at": signup.requested_at,
        "updated_at": now,
        "idempotency_key": signup.idempotency_key,
        "fingerprint": signup.fingerprint,
        "user_id": signup.user_id,
        "event_id": signup.event_id,
        "response_status": signup.response_status,
        "response_body": orjson.dumps(signup.response_body).decode()
        if signup.response_body is not None
        else None,
    }


class SqlSignUps:
    def __init__(self, conn: AnyConnection, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self._clock = clock

    async def prune_settled(self, before: datetime, limit: int) -> int:
        result = await self._conn.execute(st.SIGNUPS_PRUNE, {"p_before": before, "p_limit": limit})
        return int(result.rowcount)

    async def add(self, signup: SignUp, *, worked_by: str | None = None) -> None:
        key = signup.idempotency_key
        if key and await self.by_idempotency_key(key) is not None:
            raise RequestInProgress(key)
        values = _signup_values(signup, self._clock())
        try:
            await self._conn.execute(
                st.SIGNUP_INSERT, {"id": signup.id, **values, "worked_by": worked_by}
            )
        except IntegrityError as exc:  # the same key, committed by another process meanwhile
            if key:
                raise RequestInProgress(key) from exc
            raise

    async def worker_of(self, signup_id: str) -> str | None:
        query = select(t.signups.c.worked_by).where(t.signups.c.id == signup_id)
        worker: str | None = (await self._conn.execute(query)).scalar()
        return worker

    async def release(self, signup_id: str, worker: str) -> None:
        s = t.signups.c
        await self._conn.execute(
            update(t.signups)
            .where(s.id == signup_id, s.worked_by == worker, st.status_is(SignUpStatus.PENDING))
            .values(worked_by=None)
        )

    async def get(self, signup_id: str) -> SignUp | None:
        row = (await self._conn.execute(st.SIGNUP_BY_ID, {"p_id": signup_id})).first()
        return _signup_from_row(row) if row else None

    async def by_idempotency_key(self, key: str) -> SignUp | None:
        query = select(t.signups).where(t.signups.c.idempotency_key == key)
        row = (await self._conn.execute(query)).first()
        return _signup_from_row(row) if row else None

    async def unsettled_for_email(self, email: str) -> list[SignUp]:
        query = (
            select(t.signups)
            .where(
                t.signups.c.email == email,
                or_(st.status_is(SignUpStatus.PENDING), st.status_is(SignUpStatus.ABANDONED)),
            )
            .order_by(t.signups.c.requested_at)
        )
        return [_signup_from_row(r) for r in await self._conn.execute(query)]

    async def pending_before(self, cutoff: datetime, limit: int) -> list[SignUp]:
        query = (
            select(t.signups)
            .where(
                st.status_is(SignUpStatus.PENDING),
                t.signups.c.requested_at < cutoff,
            )
            .order_by(t.signups.c.requested_at)
            .limit(limit)
        )
        return [_signup_from_row(r) for r in await self._conn.execute(query)]

    async def created_for(self, user_id: str, email: str, account_email: str) -> SignUp | None:
        params = {
            "p_email": email,
            "p_other_email": account_email,
            "p_user_id": user_id,
        }
        row = (await self._conn.execute(st.SIGNUP_CREATED_FOR, params)).first()
        return _signup_from_row(row) if row else None

    async def settle(self, signup: SignUp, *, expected: SignUpStatus) -> bool:
        values = _signup_values(signup, self._clock())
        # Only what settling changes: SQLite rewrites every index over a column named
        # in SET, changed or not (docs/decisions/0002-sqlite-fast-path.md, 9349fb0).
        # The applicant, provider, fingerprint and request time are fixed at add(); a
        # key is only ever released, when a sign-up is abandoned.
        for fixed in _FIXED_AT_ADD:
            del values[fixed]
        if signup.status is not SignUpStatus.ABANDONED:
            del values["idempotency_key"]
        values["p_id"] = signup.id
        try:
            result = await self._conn.execute(st.SIGNUP_SETTLE[expected], values)
        except IntegrityError as exc:  # ux_signups_created_user: another process won
            if signup.status is SignUpStatus.CREATED:
                raise AccountAlreadyCompleted(signup.user_id or "") from exc
            raise
        return bool(result.rowcount)


class SqlOutbox:
    def __init__(self, conn: AnyConnection, written: Callable[[OutboxEntry], None]) -> None:
        self._conn = conn
        self._written = written

    async def add(self, event: OutboxEvent) -> None:
        payload = event.to_json()
        result = await self._conn.execute(
            st.OUTBOX_INSERT,
            {
                "event_id": event.id,
                "event_type": event.type,
                "routing_key": event.routing_key,
                "payload": payload.decode(),
                "created_at": event.time,
                "attempts": 0,
            },
        )
        # The row's id where the insert ran direct on SQLite (0: not known here).
        position = result.lastrowid if isinstance(result, Changed) else 0
        self._written(
            OutboxEntry(event.id, event.routing_key, event.type, payload, event.time, 0, position)
        )

    async def claim(
        self, holder: str, until: datetime, now: datetime, limit: int
    ) -> list[OutboxEntry]:
        rows = (
            await self._conn.execute(st.OUTBOX_CLAIMABLE, {"p_now": now, "p_limit": limit})
        ).all()
        if not rows:
            return []
        await self._conn.execute(
            st.OUTBOX_CLAIM,
            {"p_ids": [r.id for r in rows], "p_until": until, "p_holder": holder},
        )
        return [_entry_from_row(r, r.attempts + 1) for r in rows]

    async def unpublished(self, limit: int, after: int = 0) -> list[OutboxEntry]:
        rows = await self._conn.execute(
            st.OUTBOX_UNPUBLISHED_AFTER, {"p_limit": limit, "p_after": after}
        )
        return [_entry_from_row(r, r.attempts) for r in rows]

    async def mark_published(self, event_ids: list[str], at: datetime) -> None:
        if event_ids:
            await self._conn.execute(
                st.OUTBOX_PUBLISHED, [{"p_id": event_id, "p_at": at} for event_id in event_ids]
            )

    async def release(self, event_ids: list[str], error: str) -> None:
        if event_ids:
            await self._conn.execute(
                update(t.outbox)
                .where(t.outbox.c.event_id.in_(event_ids), t.outbox.c.published_at.is_(None))
                .values(claimed_until=None, last_error=error[:500])
            )

    async def status(self, *, count_published: bool = False) -> OutboxStatus:
        pending = (await self._conn.execute(st.OUTBOX_PENDING_COUNT)).scalar_one()
        oldest = (await self._conn.execute(st.OUTBOX_OLDEST_PENDING)).scalar()
        if isinstance(oldest, str):  # the inline SQLite connection may hand back text
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        published = None
        if count_published:  # a scan of every published row: the CLI's, not the probes'
            published = int((await self._conn.execute(st.OUTBOX_PUBLISHED_COUNT)).scalar_one())
        return OutboxStatus(int(pending), oldest, published)

    async def prune_published(self, before: datetime, limit: int) -> int:
        result = await self._conn.execute(st.OUTBOX_PRUNE, {"p_before": before, "p_limit": limit})
        return int(result.rowcount)

    async def select_for_replay(
        self, since: datetime | None, event_id: str | None, limit: int, after_id: int
    ) -> list[tuple[int, OutboxEntry]]:
        o = t.outbox.c
        conditions = [o.id > after_id]
        if since is not None:
            conditions.append(o.created_at >= since)
        if event_id is not None:
            conditions.append(o.event_id == event_id)
        query = st.OUTBOX_ENTRIES.where(and_(*conditions)).order_by(o.id).limit(limit)
        return [(r.id, _entry_from_row(r, r.attempts)) for r in await self._conn.execute(query)]


class SqlUsers:
    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def add(self, account: CreatedAccount) -> None:
        assert account.password_hash, "the local store keeps only hashed passwords"
        if await self.exists(account.email):
            raise EmailAlreadyRegistered(account.email)
        try:
            await self._conn.execute(
                insert(t.users).values(
                    user_id=account.user_id,
                    email=account.email,
                    password_hash=account.password_hash,
                    given_name=account.given_name,
                    family_name=account.family_name,
                    email_verified=account.email_verified,
                    created_at=account.created_at,
                    user_metadata=_profile_to_json(account.user_metadata),
                )
            )
        except IntegrityError as exc:  # a concurrent sign-up from another process won
            raise EmailAlreadyRegistered(account.email) from exc

    async def exists(self, email: str) -> bool:
        query = select(t.users.c.user_id).where(st.same_mailbox(email))
        return (await self._conn.execute(query)).first() is not None

    async def by_email(self, email: str) -> CreatedAccount | None:
        row = (await self._conn.execute(select(t.users).where(st.same_mailbox(email)))).first()
        return None if row is None else _account_from_row(row)

    async def by_id(self, user_id: str) -> CreatedAccount | None:
        row = (
            await self._conn.execute(select(t.users).where(t.users.c.user_id == user_id))
        ).first()
        return None if row is None else _account_from_row(row)

    async def mark_verified(self, user_id: str) -> bool:
        # Guarded: of two requests verifying one account at once, one changes the row.
        result = await self._conn.execute(
            update(t.users)
            .where(t.users.c.user_id == user_id, t.users.c.email_verified.is_(False))
            .values(email_verified=True)
        )
        return bool(result.rowcount)


def _account_from_row(row: Any) -> CreatedAccount:
    return CreatedAccount(
        user_id=row.user_id,
        email=row.email,
        email_verified=bool(row.email_verified),
        created_at=row.created_at,
        given_name=row.given_name,
        family_name=row.family_name,
        user_metadata=orjson.loads(row.user_metadata) if row.user_metadata else None,
    )


class SqlConsents:
    """The consent record kept with each account, and the texts served."""

    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def add(self, user_id: str, records: Sequence[ConsentRecord]) -> None:
        if not records:
            return
        # One precompiled statement for all of them (on SQLite the direct path): a
        # statement built per row cost a compile each, most of a form's cost (bench).
        await self._conn.execute(
            st.CONSENT_INSERT,
            [
                {
                    "user_id": user_id,
                    "consent_id": r.id,
                    "version": r.version,
                    "accepted": r.accepted,
                    "at": r.at,
                    "language": r.language,
                    "text_sha256": r.text_sha256,
                }
                for r in records
            ],
        )

    async def of_user(self, user_id: str) -> list[ConsentRecord]:
        c = t.consent_records.c
        rows = await self._conn.execute(
            select(t.consent_records).where(c.user_id == user_id).order_by(c.consent_id)
        )
        return [
            ConsentRecord(
                r.consent_id, r.version, bool(r.accepted), r.at, r.language, r.text_sha256
            )
            for r in rows
        ]

    async def texts(self) -> dict[tuple[str, str, str], str]:
        rows = await self._conn.execute(select(t.consent_texts))
        return {(r.consent_id, r.version, r.language): r.text_sha256 for r in rows}

    async def remember_texts(
        self, texts: Mapping[tuple[str, str, str], str], now: datetime
    ) -> None:
        for (consent_id, version, language), digest in texts.items():
            await self._conn.execute(
                insert(t.consent_texts).values(
                    consent_id=consent_id,
                    version=version,
                    language=language,
                    text_sha256=digest,
                    first_seen=now,
                )
            )


class SqlLeases:
    """Named leases: who may act alone (the one relay on SQLite), until when."""

    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        row = (await self._conn.execute(select(t.leases).where(t.leases.c.name == name))).first()
        if row is None:
            await self._conn.execute(
                insert(t.leases).values(name=name, holder=holder, expires_at=until)
            )
            return True
        if row.holder != holder and row.expires_at > now:
            return False
        await self._conn.execute(
            update(t.leases).where(t.leases.c.name == name).values(holder=holder, expires_at=until)
        )
        return True

    async def release(self, name: str, holder: str) -> None:
        await self._conn.execute(
            delete(t.leases).where(t.leases.c.name == name, t.leases.c.holder == holder)
        )


class SqlAnnounced:
    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def event_for(self, user_id: str) -> str | None:
        row = (await self._conn.execute(st.ANNOUNCED_EVENT, {"p_user_id": user_id})).first()
        return str(row.event_id) if row else None

    async def add(self, user_id: str, event_id: str, origin: str, at: datetime) -> None:
        try:
            await self._conn.execute(
                st.ANNOUNCED_INSERT,
                {"user_id": user_id, "event_id": event_id, "origin": origin, "announced_at": at},
            )
        except IntegrityError as exc:  # another process announced it in the same instant
            raise AccountAlreadyAnnounced(user_id) from exc

    async def count_by_origin(self) -> dict[str, int]:
        a = t.announced_accounts.c
        query = select(a.origin, func.count()).group_by(a.origin)
        return {str(origin): int(n) for origin, n in await self._conn.execute(query)}


def _profile(account: CreatedAccount) -> str:
    # What an announcement needs of the account; never a password or its hash.
    return orjson.dumps(
        {
            "user_id": account.user_id,
            "email": account.email,
            "email_verified": account.email_verified,
            "created_at": account.created_at.isoformat(),
            "given_name": account.given_name,
            "family_name": account.family_name,
            "name": account.name,
            "intent_id": account.intent_id,
            "connection": account.connection,
            "is_social": account.is_social,
        }
    ).decode()


def _account_from_profile(text: str) -> CreatedAccount:
    data = orjson.loads(text)
    created_at = datetime.fromisoformat(data.pop("created_at"))
    return CreatedAccount(created_at=created_at, **data)


class SqlSightings:
    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def add(self, sighting: Sighting) -> None:
        c = t.account_sightings.c
        user_id = sighting.account.user_id
        if (await self._conn.execute(select(c.user_id).where(c.user_id == user_id))).first():
            return
        try:
            await self._conn.execute(
                insert(t.account_sightings).values(
                    user_id=user_id,
                    intent_id=sighting.account.intent_id,
                    origin=sighting.origin,
                    auth0_event_id=sighting.auth0_event_id,
                    profile=_profile(sighting.account),
                    seen_at=sighting.seen_at,
                )
            )
        except IntegrityError as exc:  # kept by another process meanwhile: the same thing
            raise AccountAlreadyAnnounced(user_id) from exc

    async def oldest(self, limit: int) -> list[Sighting]:
        c = t.account_sightings.c
        query = select(t.account_sightings).order_by(c.seen_at).limit(limit)
        return [
            Sighting(_account_from_profile(r.profile), r.origin, r.auth0_event_id, r.seen_at)
            for r in await self._conn.execute(query)
        ]

    async def remove(self, user_id: str) -> None:
        c = t.account_sightings.c
        await self._conn.execute(delete(t.account_sightings).where(c.user_id == user_id))


class SqlCheckpoints:
    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def get(self, name: str) -> datetime | None:
        c = t.checkpoints.c
        at: datetime | None = (
            await self._conn.execute(select(c.at).where(c.name == name))
        ).scalar()
        return at

    async def put(self, name: str, at: datetime) -> None:
        c = t.checkpoints.c
        changed = await self._conn.execute(
            update(t.checkpoints).where(c.name == name).values(at=at)
        )
        if not changed.rowcount:
            await self._conn.execute(insert(t.checkpoints).values(name=name, at=at))


class SqlTransaction:
    """The repositories of one transaction; `outbox_entries` are the rows it wrote, for
    the relay once it commits (docs/decisions/0008-relay-in-the-web-process.md)."""

    def __init__(self, conn: AnyConnection, clock: Callable[[], datetime]) -> None:
        self.outbox_entries: list[OutboxEntry] = []
        self.signups = SqlSignUps(conn, clock)
        self.outbox = SqlOutbox(conn, self.outbox_entries.append)
        self.users = SqlUsers(conn)
        self.leases = SqlLeases(conn)
        # Not a port of the Transaction protocol: signup.adapters.challenge uses it.
        self.challenges = SqlSpentChallenges(conn)
        self.consents = SqlConsents(conn)
        self.announced = SqlAnnounced(conn)
        self.sightings = SqlSightings(conn)
        self.checkpoints = SqlCheckpoints(conn)
        self.attempt_notices = SqlAttemptNotices(conn)
