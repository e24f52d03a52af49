"""The proof-of-work solutions already used (SIGNUP_CHALLENGE=pow without Redis).

A solution is accepted once: its challenge is recorded here, with whom it was used by (a
digest of the request's Idempotency-Key, or a one-off mark) and when it expires. Rows
past their expiry are deleted beside the relay, a batch at a time.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spent_challenges",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_spent_challenges_expires_at", "spent_challenges", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_spent_challenges_expires_at", "spent_challenges")
    op.drop_table("spent_challenges")
