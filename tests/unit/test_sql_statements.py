"""The hot path's statements, as SQLite is given them."""

from __future__ import annotations

import re

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

from signup.adapters import sql
from signup.domain.model import SignUpStatus


def _sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=sqlite.dialect()))


def test_the_status_is_written_into_the_statements_never_bound() -> None:
    # A bound status (the column the partial indexes are over) makes SQLite plan the
    # statement again at every run: 58 against 11 us for the owner lookup, in process.
    lookup = _sql(sql._SIGNUP_CREATED_FOR)
    assert "signups.status = 'created'" in lookup
    for expected, statement in sql._SIGNUP_SETTLE.items():
        where = _sql(statement).split("WHERE", 1)[1]
        assert f"signups.status = '{expected.value}'" in where
    assert set(sql._SIGNUP_SETTLE) == set(SignUpStatus)
    for text in [lookup, *(_sql(s) for s in sql._SIGNUP_SETTLE.values())]:
        where = text.split("WHERE", 1)[1]
        assert not re.search(r"status = \?", where)
