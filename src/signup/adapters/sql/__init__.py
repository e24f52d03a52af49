"""SQL adapters: the repositories and the batching unit of work (SQLite and PostgreSQL).

- `statements`: the hot path's statements, built once;
- `repositories`: the repository ports on SQLAlchemy, and `SqlTransaction`;
- `sqlite_fast`: the SQLite fast path (statements compiled once, run on sqlite3);
- `unit_of_work`: `SqlUnitOfWork`, the group commit, over one of two writers:
  `sqlite_writer` (on the event loop, `flock`, the WAL checkpointer) and `async_writer`
  (PostgreSQL, or SQLite in memory);
- `batches`: what the two writers share.

The decision records behind them: docs/decisions/0001 to 0005.
"""

from signup.adapters.sql.repositories import (
    AnyConnection,
    SqlLeases,
    SqlOutbox,
    SqlSignUps,
    SqlTransaction,
    SqlUsers,
)
from signup.adapters.sql.sqlite_fast import InlineConnection, run_inline
from signup.adapters.sql.unit_of_work import SqlUnitOfWork

__all__ = [
    "AnyConnection",
    "InlineConnection",
    "SqlLeases",
    "SqlOutbox",
    "SqlSignUps",
    "SqlTransaction",
    "SqlUnitOfWork",
    "SqlUsers",
    "run_inline",
]
