"""Operations endpoints (/metrics, /openapi.json, /docs) on `signup serve`'s operations port.

Public by default they were an enumeration oracle: the sign-up counters move with each
request's outcome. These run the real command and look at both ports.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from prometheus_client.parser import text_string_to_metric_families

from signup.testing.processes import ServiceProcess, run_cli
from signup.testing.server import free_port

pytestmark = pytest.mark.e2e
PASSWORD = "violet tractor anthem"
OPS_ONLY = ("/metrics", "/openapi.json", "/docs")


def env_for(tmp_path: Path, exchange: str, **extra: str) -> dict[str, str]:
    return {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/signup.db",
        "SIGNUP_EXCHANGE": exchange,
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_ARGON2_MEMORY_KIB": "1024",
        "SIGNUP_ARGON2_TIME_COST": "1",
        **extra,
    }


def created(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "signup_signups_total" and sample.labels == {"outcome": "created"}:
                return float(sample.value)
    return 0.0


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, dict[str, str]]:
    async with http.get(url) as response:
        return response.status, await response.text(), dict(response.headers)


async def sign_up(http: aiohttp.ClientSession, base: str, email: str) -> None:
    async with http.post(
        f"{base}/user/signup", json={"email": email, "password": PASSWORD}
    ) as response:
        assert response.status == 201, await response.text()


def assert_no_third_party_loads(page: str, headers: dict[str, str]) -> None:
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in csp and "unsafe" not in csp
    # Nothing for a browser to fetch or run: no script, no stylesheet, no frame or image,
    # and every link stays on the operations origin.
    assert not re.search(r"<(script|link|iframe|img|style|object|embed)\b", page, re.I)
    assert not re.search(r"\bsrc\s*=", page, re.I)
    assert all(href.startswith("/") for href in re.findall(r'href="([^"]*)"', page))
    assert "//" not in "".join(re.findall(r'href="([^"]*)"', page))


async def test_operations_endpoints_are_on_the_ops_port_only(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    service = ServiceProcess(env_for(tmp_path, exchange_name), tmp_path / "serve.log").start()
    try:
        async with aiohttp.ClientSession() as http:
            for path in (*OPS_ONLY, "/redoc", "/docs/oauth2-redirect"):
                status, body, headers = await get(http, f"{service.url}{path}")
                assert status == 404, (path, body)
                assert headers["Content-Type"].startswith("application/problem+json")
                assert "signup_" not in body

            status, before_text, headers = await get(http, f"{service.ops_url}/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            before = created(before_text)
            await sign_up(http, service.url, "ops-port@example.com")
            status, after_text, _ = await get(http, f"{service.ops_url}/metrics")
            assert status == 200 and created(after_text) == before + 1
            assert "signup_outbox_pending" in after_text

            status, body, _ = await get(http, f"{service.ops_url}/openapi.json")
            spec: dict[str, Any] = orjson.loads(body)
            assert status == 200 and spec["openapi"].startswith("3.")
            # The public app's schema, and only its operations.
            assert "/user/signup" in spec["paths"] and "/metrics" not in spec["paths"]

            status, page, headers = await get(http, f"{service.ops_url}/docs")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "POST /user/signup" in page and "Idempotency-Key" in page
            assert_no_third_party_loads(page, headers)

            for path in ("/healthz", "/readyz"):
                for base in (service.url, service.ops_url):
                    status, body, _ = await get(http, f"{base}{path}")
                    assert status == 200, (base, path, body)
            status, body, headers = await get(http, f"{service.ops_url}/redoc")
            assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
            assert headers["X-Content-Type-Options"] == "nosniff"
            # DNS rebinding: a page whose own name now points at the operations address
            # sends that name as Host, and gets nothing.
            async with http.get(
                f"{service.ops_url}/metrics", headers={"Host": "rebound.evil.example"}
            ) as answer:
                assert answer.status == 421 and "signup_" not in await answer.text()
            async with http.get(
                f"{service.ops_url}/metrics",
                headers={"Host": f"localhost:{service.env['SIGNUP_OPS_PORT']}"},
            ) as answer:
                assert answer.status == 200
    finally:
        service.stop()
    logs = service.logs()
    assert "Traceback" not in logs, logs[-3000:]
    listening = [orjson.loads(line) for line in logs.splitlines() if '"ops.listening"' in line]
    assert [(e["host"], str(e["port"])) for e in listening] == [
        ("127.0.0.1", service.env["SIGNUP_OPS_PORT"])
    ]


async def test_ops_on_public_port_puts_them_back_for_development(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    env = env_for(tmp_path, exchange_name, SIGNUP_OPS_ON_PUBLIC_PORT="true", SIGNUP_OPS_PORT="")
    service = ServiceProcess(env, tmp_path / "serve.log").start()
    try:
        async with aiohttp.ClientSession() as http:
            status, before_text, _ = await get(http, f"{service.url}/metrics")
            assert status == 200
            await sign_up(http, service.url, "ops-public@example.com")
            status, after_text, _ = await get(http, f"{service.url}/metrics")
            assert created(after_text) == created(before_text) + 1
            status, body, _ = await get(http, f"{service.url}/openapi.json")
            assert status == 200 and "/user/signup" in orjson.loads(body)["paths"]
            status, page, headers = await get(http, f"{service.url}/docs")
            assert status == 200 and "POST /user/signup" in page
            assert_no_third_party_loads(page, headers)
    finally:
        service.stop()
    # An empty SIGNUP_OPS_PORT: no operations server at all.
    assert '"ops.listening"' not in service.logs()


async def test_several_workers_share_the_ops_port(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    env = env_for(tmp_path, exchange_name, SIGNUP_WEB_CONCURRENCY="2")
    service = ServiceProcess(env, tmp_path / "serve.log").start(timeout=60)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                status, body, _ = await get(http, f"{service.ops_url}/metrics")
                assert status == 200 and "signup_signups_total" in body
    finally:
        service.stop()
    logs = service.logs()
    # Each worker bound its own socket on the port (SO_REUSEPORT) and none failed.
    assert logs.count('"ops.listening"') == 2, logs[-3000:]
    assert "Traceback" not in logs and "ops.stopped" not in logs, logs[-3000:]


def test_a_held_ops_port_stops_serve_with_a_clear_message(
    tmp_path: Path, exchange_name: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = str(holder.getsockname()[1])
        done = run_cli(
            env_for(tmp_path, exchange_name, SIGNUP_OPS_PORT=held),
            "serve",
            "--port",
            str(free_port()),
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"operations port 127.0.0.1:{held} is unavailable" in done.stderr
    assert "SIGNUP_OPS_PORT" in done.stderr and "Traceback" not in done.stderr
