"""Fixtures for the sign-up page in a real browser.

One `signup serve` subprocess per test session (its own SQLite file, its own RabbitMQ
exchange, rate limits off), one headless Debian Chromium driven by Playwright, and a
fresh browser context per test. Chromium must be installed (`apt-get install chromium`):
without it these tests fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    async_playwright,
)

from .helpers import AMQP_URL, CHROMIUM_ARGS, DESKTOP

SERVER_START_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    base_url: str
    exchange: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    last_error = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"`signup serve` exited with {server.process.returncode} before it was healthy:\n"
                f"{server.log_tail()}"
            )
        try:
            url = f"{server.base_url}/healthz"  # always http://127.0.0.1:<port>
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    pytest.fail(
        f"`signup serve` not healthy after {SERVER_START_SECONDS}s ({last_error}):\n"
        f"{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `signup serve` (web app and outbox relay) on a free port."""
    with start_server(tmp_path_factory.mktemp("signup-serve")) as srv:
        yield srv


@contextlib.contextmanager
def start_server(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """`signup serve` in `workdir` with the browser tests' settings and `extra_env`."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    exchange = f"test-browser-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'signup.db'}",
        "SIGNUP_AMQP_URL": AMQP_URL,
        "SIGNUP_EXCHANGE": exchange,
        "SIGNUP_SITE_URL": base_url,
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_LOG_FORMAT": "console",
        "SIGNUP_IDENTITY_PROVIDER": "local",
        "SIGNUP_HIDE_EXISTING_ACCOUNTS": "false",
        "SIGNUP_WEB_CONCURRENCY": "1",
        # Quick to hash in tests; the production defaults are set in Settings.
        "SIGNUP_ARGON2_TIME_COST": "1",
        "SIGNUP_ARGON2_MEMORY_KIB": "8192",
        "SIGNUP_RELAY_POLL_SECONDS": "0.2",
        # No operations port: several of these servers run at once (and beside others').
        "SIGNUP_OPS_PORT": "",
    }
    env.pop("SIGNUP_BRAND_DIR", None)
    env.pop("SIGNUP_ALLOWED_ORIGINS", None)
    env.update(extra_env or {})
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "signup", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    srv = Server(base_url=base_url, exchange=exchange, log_path=log_path, process=process)
    try:
        _wait_healthy(srv)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        asyncio.run(_delete_exchange(exchange))


async def _delete_exchange(name: str) -> None:
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception:
        return
    async with connection:
        channel = await connection.channel()
        with contextlib.suppress(Exception):  # best effort: the server may never have made it
            await channel.exchange_delete(name)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Chromium is not installed, so the browser tests cannot run. "
            "Install Debian's package: apt-get install -y chromium"
        )
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(playwright: Playwright, chromium_path: str) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(
        executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    await browser.close()


@dataclass
class PageProblems:
    """What went wrong inside the page: uncaught errors and Content-Security-Policy refusals."""

    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.errors.append(f"CSP: {text}")

    def page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser, server: Server) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport=DESKTOP, base_url=server.base_url, locale="en-GB")
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A fresh page; the test fails if the page threw or the CSP refused anything."""
    problems = PageProblems()
    pg = await context.new_page()
    pg.on("console", problems.console)
    pg.on("pageerror", problems.page_error)
    yield pg
    assert not problems.errors, "\n".join(problems.errors)


@pytest_asyncio.fixture(loop_scope="session")
async def user_new_queue(server: Server) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """An exclusive queue bound to the test exchange with `user.new`, made before any sign-up."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            server.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="user.new")
        yield queue
