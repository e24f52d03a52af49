"""Where a database's schema stands, read without changing anything.

The read-only commands (`signup outbox status`, `signup outbox replay`) must not apply
migrations: an operator looking at a production database expects a look, not a schema
change (and a mistyped SIGNUP_DATABASE_URL must not create a new SQLite file).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from signup.adapters.database import MIGRATIONS, create_engine


class SchemaMissing(RuntimeError):
    pass


def head_revision() -> str:
    # Imported here: Alembic's memory is needed only by these commands and migrating
    # (docs/decisions/0015).
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def _current(url: str) -> str | None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except DBAPIError:  # no alembic_version table: never migrated
        return None
    finally:
        await engine.dispose()


def check_readable(url: str) -> str | None:
    """Raise `SchemaMissing` if the database was never migrated; a warning if it is behind."""
    parsed = make_url(url)
    where = parsed.render_as_string(hide_password=True)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).exists():
        raise SchemaMissing(
            f"no database at {where}: run `signup migrate` (or `signup serve`) first"
        )
    current = asyncio.run(_current(url))
    if current is None:
        raise SchemaMissing(
            f"the database at {where} has no schema yet: run `signup migrate` "
            "(or `signup serve`) first"
        )
    head = head_revision()
    if current != head:
        return (
            f"the database's schema is at revision {current}, this version's is {head}: "
            "run `signup migrate` (read-only commands apply no migrations)"
        )
    return None
