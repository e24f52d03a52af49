"""The whole chain as processes: `signup serve` and both workers, a real SMTP server and a
real CRM receiver. One sign-up gives one e-mail and one signed CRM call; stopping and
restarting a worker mid-stream loses nothing and repeats nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from worker_fixtures import CRM_SECRET, CrmReceiver, SmtpSink
from worker_fixtures import crm_receiver as crm_receiver
from worker_fixtures import smtp as smtp

from signup.testing.processes import ServiceProcess

pytestmark = pytest.mark.e2e
PASSWORD = "violet tractor anthem"


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "signup", "worker", name, "--queue-prefix", env["TEST_PREFIX"]],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def until(condition: Callable[[], bool], what: str, seconds: float = 45) -> None:
    for _ in range(int(seconds * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_ready(queue: str, seconds: float = 30) -> None:
    """A worker is ready once its queue exists and has a consumer."""
    for _ in range(int(seconds * 10)):
        listing = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name", "consumers"],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in listing.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == queue and int(parts[-1]) > 0:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no consumer on {queue}")


async def test_one_signup_one_email_one_crm_call_across_worker_restarts(
    tmp_path: Path, exchange_name: str, smtp: SmtpSink, crm_receiver: CrmReceiver
) -> None:
    prefix = f"test-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/signup.db",
        "SIGNUP_EXCHANGE": exchange_name,
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_RELAY_POLL_SECONDS": "0.2",
        "SIGNUP_ARGON2_MEMORY_KIB": "8192",
        "SIGNUP_ARGON2_TIME_COST": "1",
        "SIGNUP_SMTP_HOST": smtp.host,
        "SIGNUP_SMTP_PORT": str(smtp.port),
        "SIGNUP_MAIL_FROM": "welcome@nakedcoders.test",
        "SIGNUP_CRM_URL": crm_receiver.url,
        "SIGNUP_CRM_SECRET": CRM_SECRET,
        "SIGNUP_WORKER_RETRY_DELAYS_SECONDS": "0.5,1",
        "TEST_PREFIX": prefix,
    }
    workers: dict[str, subprocess.Popen[bytes]] = {}
    service = ServiceProcess(env, tmp_path / "serve.log")
    try:
        for name in ("welcome-email", "crm-sync"):
            workers[name] = start_worker(name, env, tmp_path / f"{name}.log")
            await wait_ready(f"{prefix}.{name}")
        service.start()
        emails = [f"p{i}@example.com" for i in range(24)]
        async with aiohttp.ClientSession() as http:

            async def sign_up(email: str) -> int:
                body = {"email": email, "password": PASSWORD, "given_name": "Pat"}
                async with http.post(f"{service.url}/user/signup", json=body) as response:
                    return response.status

            assert await sign_up(emails[0]) == 201
            await until(
                lambda: len(smtp.received) == 1 and len(crm_receiver.calls) == 1,
                "the first effects",
            )
            statuses = []
            for i, email in enumerate(emails[1:], start=1):
                statuses.append(await sign_up(email))
                if i == 8:  # a graceful restart of each worker mid-stream
                    for name, process in list(workers.items()):
                        process.send_signal(signal.SIGTERM)
                        # Waited for off the loop: the CRM receiver is served by this loop.
                        code = await asyncio.to_thread(process.wait, 30)
                        assert code == 0, (tmp_path / f"{name}.log").read_text()
                        workers[name] = start_worker(name, env, tmp_path / f"{name}.log")
            assert statuses == [201] * (len(emails) - 1)

        await until(lambda: len({r[1][0] for r in smtp.received}) == len(emails), "every e-mail")
        await until(
            lambda: len({c["id"] for c in crm_receiver.calls}) == len(emails), "every CRM call"
        )
        await asyncio.sleep(1.5)  # a late duplicate would show up now
        recipients = Counter(r[1][0] for r in smtp.received)
        assert recipients == Counter(emails), "one welcome e-mail per account"
        calls = Counter(c["json"]["email"] for c in crm_receiver.calls)
        assert calls == Counter(emails), "one CRM call per account"
        assert all(c["valid"] for c in crm_receiver.calls)
        message: Any = smtp.received[0][2]
        assert "Pat" in message.get_body(("plain",)).get_content()
    finally:
        service.stop()
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    for log in tmp_path.glob("*.log"):
        assert PASSWORD not in log.read_text(errors="replace")
