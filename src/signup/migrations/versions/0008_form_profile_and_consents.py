"""The site's form (issue 21): declared fields and consent records kept with the sign-up
and the account, and the consent texts served (start-up compares them).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from signup.adapters.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("signups", sa.Column("profile", sa.Text()))
    op.add_column("users", sa.Column("user_metadata", sa.Text()))
    op.create_table(
        "consent_records",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("consent_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "consent_texts",
        sa.Column("consent_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("language", sa.String(35), primary_key=True),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consent_texts")
    op.drop_table("consent_records")
    op.drop_column("users", "user_metadata")
    op.drop_column("signups", "profile")
