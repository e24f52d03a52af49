"""When the owner of an address was last told that someone tried to sign up with it
(SIGNUP_HIDE_EXISTING_ACCOUNTS=true): at most one notice an hour, across processes.

Keyed by a SHA-256 of the case-folded address, so the table holds no address.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_notices",
        sa.Column("email_sha256", sa.String(64), primary_key=True),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_attempt_notices_sent_at", "attempt_notices", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_attempt_notices_sent_at", "attempt_notices")
    op.drop_table("attempt_notices")
