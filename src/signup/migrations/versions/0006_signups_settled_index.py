"""An index of settled sign-ups by when they settled, for pruning them.

Settled sign-ups (with their stored Idempotency-Key answers) older than
SIGNUP_SIGNUP_RETENTION_DAYS are deleted a batch at a time beside the relay; pending ones
never are. Partial: a pending sign-up's insert never touches it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_signups_settled_at",
        "signups",
        ["updated_at"],
        sqlite_where=sa.text("status != 'pending'"),
        postgresql_where=sa.text("status != 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_signups_settled_at", "signups")
