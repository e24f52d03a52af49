"""The log pipeline: console lines at a terminal, JSON elsewhere, secrets out of both,
library chatter quiet. Each case runs in a process of its own (logging is process-wide)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import orjson
import pytest

SECRETS = ("hunter2-secret", "cs-secret", "tok-secret", "local-secret-pw")
PROBE = """
import logging, sys
import structlog
from signup.log_config import configure_logging

configure_logging(sys.argv[1])
log = structlog.get_logger("probe")
log.info("probe.secret", password="hunter2-secret", client_secret="cs-secret",
         Authorization="Bearer tok-secret", email="pat@example.com")

def sign_up(password):
    raise RuntimeError("boom")

try:
    sign_up("local-secret-pw")
except RuntimeError:
    log.exception("probe.failed")
logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.x")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
logging.getLogger("uvicorn.error").info("Uvicorn running on %s://%s:%d", "http", "h", 1)
logging.getLogger("uvicorn.error").info("Shutting down")
logging.getLogger("aiormq.connection").info("aiormq chatter")
logging.getLogger("aiormq.connection").warning("aiormq warns")
"""
CONSOLE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(info|warning|error) *\] ")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_piped(log_format: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, log_format],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == ""  # logs go to stderr, never into a command's answer
    return done.stderr


def run_on_a_terminal(log_format: str) -> str:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, log_format], stderr=follower, stdout=subprocess.DEVNULL
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(60) == 0
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def check_content(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert text.count("[redacted]") >= 3  # password, client_secret, Authorization
    assert "pat@example.com" in text  # redaction takes the secrets only
    assert "RuntimeError: boom" in text  # the traceback is there, without its locals
    assert "setup plugin" not in text and "aiormq chatter" not in text
    assert "Started server process" not in text and "Uvicorn running on" not in text
    assert "Shutting down" in text and "aiormq warns" in text


def log_lines(text: str) -> list[str]:
    """The lines that start an entry (a traceback's lines follow its entry)."""
    traceback = (" ", "Traceback (most recent call last):", "RuntimeError: boom")
    return [line for line in text.splitlines() if line and not line.startswith(traceback)]


@pytest.mark.parametrize("log_format", ["json", "auto"])
def test_json_when_asked_or_when_the_output_is_not_a_terminal(log_format: str) -> None:
    text = run_piped(log_format)
    entries = [orjson.loads(line) for line in text.splitlines() if line]
    assert {e["event"] for e in entries} == {
        "probe.secret",
        "probe.failed",
        "Shutting down",
        "aiormq warns",
    }
    secret = next(e for e in entries if e["event"] == "probe.secret")
    assert secret["password"] == secret["client_secret"] == secret["Authorization"] == "[redacted]"
    check_content(text)


def test_console_lines_when_asked_even_into_a_pipe() -> None:
    text = run_piped("console")
    assert "\x1b[" not in text  # no colours where nobody reads them as colours
    starts = log_lines(text)
    assert len(starts) == 4 and all(CONSOLE_LINE.match(line) for line in starts), starts
    check_content(text)


@pytest.mark.parametrize("log_format", ["auto", "console"])
def test_console_lines_on_a_terminal(log_format: str) -> None:
    text = run_on_a_terminal(log_format)
    starts = log_lines(text)
    assert len(starts) == 4 and all(CONSOLE_LINE.match(line) for line in starts), starts
    check_content(text)


def test_json_on_a_terminal_when_asked() -> None:
    text = run_on_a_terminal("json")
    assert len([orjson.loads(line) for line in text.splitlines() if line]) == 4
    check_content(text)
