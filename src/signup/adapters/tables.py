"""The database schema (SQLAlchemy Core); migrations in `signup/migrations` mirror it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
)
from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC everywhere (SQLite has no zones); read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = MetaData()

signups = Table(
    "signups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), nullable=False, index=True),
    Column("given_name", String(100)),
    Column("family_name", String(100)),
    Column("status", String(16), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("idempotency_key", String(255), unique=True),
    # SHA-256 of the request's non-secret fields: the password never reaches the database.
    Column("fingerprint", String(64)),
    Column("user_id", String(255)),
    Column("event_id", String(36), unique=True),
    Column("response_status", Integer),
    Column("response_body", Text),
    # The instance (process) working on a pending sign-up; NULL once no request does
    # (migration 0005, signup.adapters.liveness).
    Column("worked_by", String(64)),
    # The form's declared fields and consent record (JSON, `Applicant.profile`), so that a
    # sign-up completed later (reconciliation) carries them too (migration 0008).
    Column("profile", Text),
    # Two processes completing one account at the same instant: the second one fails here.
    Index(
        "ux_signups_created_user",
        "user_id",
        unique=True,
        sqlite_where=Column("status") == "created",
        postgresql_where=Column("status") == "created",
    ),
    Index(
        "ix_signups_pending",
        "requested_at",
        sqlite_where=Column("status") == "pending",
        postgresql_where=Column("status") == "pending",
    ),
    # Settled sign-ups by when they settled, for pruning (migration 0006).
    Index(
        "ix_signups_settled_at",
        "updated_at",
        sqlite_where=Column("status") != "pending",
        postgresql_where=Column("status") != "pending",
    ),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("given_name", String(100)),
    Column("family_name", String(100)),
    Column("email_verified", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # The declared fields and consent record the local store keeps (JSON; migration 0008).
    Column("user_metadata", Text),
    # One account per mailbox, however its address is cased (as Auth0 compares them).
    Index("ux_users_email_folded", func.lower(Column("email")), unique=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("published_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("claimed_until", UTCDateTime()),
    Column("claimed_by", String(64)),
    Index(
        "ix_outbox_unpublished",
        "id",
        sqlite_where=Column("published_at").is_(None),
        postgresql_where=Column("published_at").is_(None),
    ),
    # Pruning's range: published rows only, so an insert never touches it (0004).
    Index(
        "ix_outbox_published_at",
        "published_at",
        sqlite_where=Column("published_at").is_not(None),
        postgresql_where=Column("published_at").is_not(None),
    ),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("processed_at", UTCDateTime(), nullable=False),
    Index("ix_processed_events_processed_at", "consumer", "processed_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

# Proof-of-work solutions already used, until they expire (migration 0007,
# signup.adapters.challenge).
spent_challenges = Table(
    "spent_challenges",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_spent_challenges_expires_at", "expires_at"),
)

# When the owner of each address was last told that someone tried to sign up with it
# (SIGNUP_HIDE_EXISTING_ACCOUNTS; migration 0010): at most one notice an hour. Keyed by a
# SHA-256 of the case-folded address; rows past the hour are pruned beside the relay.
attempt_notices = Table(
    "attempt_notices",
    metadata,
    Column("email_sha256", String(64), primary_key=True),
    Column("sent_at", UTCDateTime(), nullable=False),
    Index("ix_attempt_notices_sent_at", "sent_at"),
)

# Each consent an account was shown at sign-up, and the answer (migration 0008): kept with
# the account, not pruned with the sign-ups.
consent_records = Table(
    "consent_records",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("consent_id", String(64), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("accepted", Boolean, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("language", String(35), nullable=False),
    Column("text_sha256", String(64), nullable=False),
)

# The text of each (consent, version, language) ever served: start-up refuses a form whose
# text changed under the same version (migration 0008).
consent_texts = Table(
    "consent_texts",
    metadata,
    Column("consent_id", String(64), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("language", String(35), primary_key=True),
    Column("text_sha256", String(64), nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
)

# Every account that has had its `user.new`, by the provider's user id: the one dedupe
# key of the form, Auth0's events and the sweep (migration 0009). Never pruned: outbox
# rows and settled sign-ups are, and an account must not be announced again after that.
announced_accounts = Table(
    "announced_accounts",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("announced_at", UTCDateTime(), nullable=False),
)

# Accounts Auth0 told us of while the form's sign-up of them was still pending (the
# profile as seen, no secret): announced as seen should that sign-up be abandoned.
account_sightings = Table(
    "account_sightings",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("intent_id", String(36)),
    Column("origin", String(16), nullable=False),
    Column("auth0_event_id", String(255)),
    Column("profile", Text, nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False),
)

# Where a background job got to (the sweep's last window end).
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
)
