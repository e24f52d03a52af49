"""A newcomer's first minute: `signup outbox status` and `signup serve` as people run them.

The CLI prints its answer and nothing else; `serve` logs JSON when its output is not a
terminal (console lines when told), says `ready: <url>` once, and without a broker keeps
serving and says once that the events wait in the outbox.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from signup.testing.processes import ServiceProcess

pytestmark = pytest.mark.e2e
PASSWORD = "violet tractor anthem"
OUTBOX_WAIT = "events wait in the outbox"
# `2026-12-05 04:01:08 [info     ] event   key=value`: structlog's ConsoleRenderer.
CONSOLE_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(debug|info|warning|error|critical) *\] "
)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/signup.db",
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_ARGON2_MEMORY_KIB": "8192",
        "SIGNUP_ARGON2_TIME_COST": "1",
        **extra,
    }


def service(tmp_path: Path, env: dict[str, str], log_format: str | None) -> ServiceProcess:
    process = ServiceProcess(env, tmp_path / "serve.log")
    if log_format is None:  # the default, as `make run` has it
        del process.env["SIGNUP_LOG_FORMAT"]
    else:
        process.env["SIGNUP_LOG_FORMAT"] = log_format
    return process


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own loopback
        return answer.status, answer.read().decode()


def post_signup(url: str, email: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - our own loopback
        f"{url}/user/signup",
        data=orjson.dumps({"email": email, "password": PASSWORD}),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return int(answer.status)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound to nothing that listens: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`signup ARGS` as typed at a shell, with the default log format."""
    env = {k: v for k, v in os.environ.items() if k != "SIGNUP_LOG_FORMAT"}
    return subprocess.run(
        [sys.executable, "-m", "signup", *args],
        env={**env, **env_for(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_and_outbox_status_print_their_answer_and_nothing_else(tmp_path: Path) -> None:
    migrated = cli(tmp_path, "migrate")  # a fresh database: every migration runs
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == "database is up to date\n"
    assert migrated.stderr == ""  # Alembic's set-up and "Running upgrade" lines: not here
    done = cli(tmp_path, "outbox", "status")
    assert done.returncode == 0, done.stderr
    assert "pending" in done.stdout and "oldest pending" in done.stdout
    assert "published" in done.stdout
    assert "alembic" not in done.stdout.lower()
    assert not any(line.lstrip().startswith("{") for line in lines(done.stdout))
    assert done.stderr == ""  # nothing above or below the table


def test_serve_logs_json_when_its_output_is_not_a_terminal(tmp_path: Path) -> None:
    # Two web workers: the ready line is still said once, by the process that serves.
    process = service(tmp_path, env_for(tmp_path, SIGNUP_WEB_CONCURRENCY="2"), log_format=None)
    process.start()
    try:
        until(lambda: "ready: " in process.logs(), "the ready line")
        assert post_signup(process.url, "json@example.com") == 201
        until(lambda: "signup.created" in process.logs(), "the sign-up's line")
    finally:
        process.stop()
    logged = lines(process.logs())
    events = [orjson.loads(line) for line in logged]  # every line is a JSON object
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events)
    ready = [e for e in events if str(e["event"]).startswith("ready: ")]
    assert [e["event"] for e in ready] == [f"ready: {process.url}/signup"]
    assert not any(str(e.get("logger", "")).startswith("alembic") for e in events)
    assert not any("Uvicorn running on" in str(e["event"]) for e in events)
    assert PASSWORD not in process.logs()


def test_serve_logs_console_lines_when_told(tmp_path: Path) -> None:
    process = service(tmp_path, env_for(tmp_path), log_format="console")
    process.start()
    try:
        until(lambda: "ready: " in process.logs(), "the ready line")
        assert post_signup(process.url, "console@example.com") == 201
        until(lambda: "signup.created" in process.logs(), "the sign-up's line")
    finally:
        process.stop()
    logged = lines(process.logs())
    not_console = [line for line in logged if not CONSOLE_LINE.match(line)]
    assert not_console == [], not_console
    ready = [line for line in logged if "ready: " in line]
    assert len(ready) == 1 and ready[0].rstrip().endswith(f"ready: {process.url}/signup")
    assert PASSWORD not in process.logs()


def failed_publishes(ops_url: str) -> float:
    _, text = get(f"{ops_url}/metrics")
    found = re.search(r'^signup_publishes_total\{result="failed"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_serve_without_a_broker_keeps_serving_and_says_so_once(
    tmp_path: Path, closed_port: int
) -> None:
    env = env_for(
        tmp_path,
        SIGNUP_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}/",
        SIGNUP_RELAY_POLL_SECONDS="0.2",
    )
    process = service(tmp_path, env, log_format="json")
    process.start()
    try:
        assert post_signup(process.url, "no-broker@example.com") == 201
        # Several retries of the relay (it backs off 0.2, 0.4, 0.8, 1.6 s between them).
        until(lambda: failed_publishes(process.ops_url) >= 4, "four failed publishes")
        assert get(f"{process.url}/healthz")[0] == 200
        assert post_signup(process.url, "still-serving@example.com") == 201
        until(lambda: failed_publishes(process.ops_url) >= 6, "two more failed publishes")
    finally:
        process.stop()
    events = [orjson.loads(line) for line in lines(process.logs())]
    told = [e for e in events if OUTBOX_WAIT in str(e["event"])]
    assert len(told) == 1, told
    assert told[0]["level"] == "warning"
    assert told[0]["broker"] == f"127.0.0.1:{closed_port}"
    assert "guest" not in orjson.dumps(told[0]).decode()  # the URL's credentials stay out
    # The retries themselves are not warnings: the one line above is the news.
    assert not [e for e in events if e["event"] == "relay.publish_failed" and e["level"] != "debug"]
    assert [e["event"] for e in events if str(e["event"]).startswith("ready: ")] == [
        f"ready: {process.url}/signup"
    ]
