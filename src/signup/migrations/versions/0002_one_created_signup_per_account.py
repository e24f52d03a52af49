"""At most one created sign-up (and so one event) per account, enforced by the database.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ux_signups_created_user",
        "signups",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("status = 'created'"),
        postgresql_where=sa.text("status = 'created'"),
    )


def downgrade() -> None:
    op.drop_index("ux_signups_created_user", "signups")
