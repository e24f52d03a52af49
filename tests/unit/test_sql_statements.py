"""The hot path's statements, as SQLite is given them."""

from __future__ import annotations

import re

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

from signup.adapters.sql import statements
from signup.domain.model import SignUpStatus


def _sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=sqlite.dialect()))


def test_the_status_is_written_into_the_statements_never_bound() -> None:
    # A bound status (the column the partial indexes are over) makes SQLite plan the
    # statement again at every run: docs/decisions/0003-statuses-written-into-sql.md.
    lookup = _sql(statements.SIGNUP_CREATED_FOR)
    assert "signups.status = 'created'" in lookup
    for expected, statement in statements.SIGNUP_SETTLE.items():
        where = _sql(statement).split("WHERE", 1)[1]
        assert f"signups.status = '{expected.value}'" in where
    assert set(statements.SIGNUP_SETTLE) == set(SignUpStatus)
    for text in [lookup, *(_sql(s) for s in statements.SIGNUP_SETTLE.values())]:
        where = text.split("WHERE", 1)[1]
        assert not re.search(r"status = \?", where)
