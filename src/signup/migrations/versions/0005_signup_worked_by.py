"""Which process works on a pending sign-up, so that a retry can tell a request still
running from one a crash or a lost answer left behind (issue 18).

A NULL (every row written before this revision, and a request that ended without
settling its sign-up) means that no request works on it.

Revision ID: 0005
Revises: 0004 (the retention indexes)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("signups", sa.Column("worked_by", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("signups") as batch:
        batch.drop_column("worked_by")
