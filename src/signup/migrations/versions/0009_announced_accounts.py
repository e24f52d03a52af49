"""Accounts announced (the one `user.new` each, never pruned), sightings, checkpoints.

`announced_accounts` is the dedupe key of every path that announces an account: the
form, Auth0's events (POST /hooks/auth0) and the sweep (issue 19). It starts with every
sign-up that completed and is still kept (settled ones are pruned after
SIGNUP_SIGNUP_RETENTION_DAYS), so an account the form announced is not announced again.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "announced_accounts",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("announced_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "account_sightings",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("intent_id", sa.String(36)),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("auth0_event_id", sa.String(255)),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    # One row per account: ux_signups_created_user keeps created sign-ups unique by user.
    op.execute(
        "INSERT INTO announced_accounts (user_id, event_id, origin, announced_at) "
        "SELECT user_id, event_id, 'form', updated_at FROM signups "
        "WHERE status = 'created' AND user_id IS NOT NULL AND event_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("account_sightings")
    op.drop_table("announced_accounts")
