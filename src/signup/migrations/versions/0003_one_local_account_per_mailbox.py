"""One local account per mailbox: the users' e-mails unique however they are cased.

Auth0 compares addresses case-insensitively; the local store kept them as typed, so
`Ada@example.com` and `ada@example.com` could be two accounts. Sign-ups now lower-case
the address; this index makes rows written before that collide too.

Rows that already collide are not merged or deleted here: which account (password,
events, CRM record) to keep is a person's decision. The upgrade stops, changing nothing,
and says how to find them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FIND_CLASHES = (
    "SELECT lower(email) AS mailbox, count(*) AS accounts FROM users "
    "GROUP BY lower(email) HAVING count(*) > 1"
)


class MailboxesShared(RuntimeError):
    pass


def upgrade() -> None:
    clashes = op.get_bind().execute(sa.text(FIND_CLASHES)).fetchall()
    if clashes:
        # The addresses themselves stay out of the message (it may reach logs).
        raise MailboxesShared(
            f"{len(clashes)} e-mail address(es) have more than one local account when "
            "compared case-insensitively, so ux_users_email_folded cannot be created. "
            f"List them with `{FIND_CLASHES}`, keep one account each (delete or rename the "
            "others' e-mail), then migrate again. Nothing was changed."
        )
    op.create_index("ux_users_email_folded", "users", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("ux_users_email_folded", "users")
