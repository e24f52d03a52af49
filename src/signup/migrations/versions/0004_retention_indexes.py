"""Indexes for pruning: published outbox rows by publication time, processed ids by time.

Pruning deletes published rows and processed ids older than a retention window, a few
hundred at a time (`signup.service_layer.retention`). Without these indexes each round
would scan the table from its start; with them it reads only the rows it deletes. The
outbox one is partial (published rows only), so a sign-up's insert never touches it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        sqlite_where=sa.text("published_at IS NOT NULL"),
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_index(
        "ix_processed_events_processed_at", "processed_events", ["consumer", "processed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_processed_events_processed_at", "processed_events")
    op.drop_index("ix_outbox_published_at", "outbox")
