"""The read-only commands apply no migrations, and `signup worker` never vanishes: a
module it needs that cannot be imported is an error with a non-zero exit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from signup.adapters.database import MIGRATIONS


def run(
    env_extra: dict[str, str], *args: str, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNUP_")}
    argv = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "signup", *args]
    return subprocess.run(
        argv, env={**env, **env_extra}, capture_output=True, text=True, timeout=60, check=False
    )


def url_of(db: Path) -> str:
    return f"sqlite+aiosqlite:///{db}"


def migrate_to(db: Path, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url_of(db))
    command.upgrade(config, revision)


def schema_of(db: Path) -> tuple[str, set[str]]:
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    return version, indexes


def test_outbox_status_on_no_database_says_to_migrate_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nothing-here" / "signup.db"
    done = run({"SIGNUP_DATABASE_URL": url_of(db)}, "outbox", "status")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "signup migrate" in done.stderr
    assert not db.exists() and not db.parent.exists()


def test_outbox_status_and_replay_leave_an_older_schema_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "signup.db"
    migrate_to(db, "0003")
    env = {"SIGNUP_DATABASE_URL": url_of(db), "SIGNUP_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"}
    status = run(env, "outbox", "status")
    assert status.returncode == 0, status.stderr
    assert "published" in status.stdout
    assert "run `signup migrate`" in status.stderr  # told, not done
    replay = run(env, "outbox", "replay", "--since", "2000-01-01T00:00:00")
    assert "re-sent 0 event(s)" in replay.stdout, replay.stdout + replay.stderr
    assert "pruned" in replay.stdout  # 2000 is long past the outbox's retention
    version, indexes = schema_of(db)
    assert version == "0003"
    assert "ix_outbox_published_at" not in indexes


# Runs the CLI as `signup` does, with one module made unimportable.
BLOCKED = (
    "import sys; sys.modules[sys.argv[1]] = None; sys.argv = ['signup', *sys.argv[2:]]; "
    "from signup.entrypoints.cli import main; main()"
)


def test_signup_worker_without_its_broker_client_exits_1_and_says_why(tmp_path: Path) -> None:
    done = run({}, "aio_pika", "worker", "welcome-email", "--queue-prefix", "x", code=BLOCKED)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot load the workers" in done.stderr and "aio_pika" in done.stderr
    # The other commands still work.
    helped = run({}, "aio_pika", "--help", code=BLOCKED)
    assert helped.returncode == 0 and "serve" in helped.stdout


def test_signup_worker_whose_wiring_fails_to_import_exits_1_and_says_why(tmp_path: Path) -> None:
    env = {"SIGNUP_DATABASE_URL": url_of(tmp_path / "signup.db")}
    done = run(env, "signup.bootstrap", "worker", "crm-sync", code=BLOCKED)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot load the worker" in done.stderr and "signup.bootstrap" in done.stderr
