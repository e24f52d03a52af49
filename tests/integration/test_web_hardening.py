"""Security issue 16, items 6 and 7: each attack, replayed against the app over real HTTP.

Rate limits that hold (a spoofed X-Forwarded-For, other spellings of one address, one
IPv6 /64, several processes without a shared store) and the web app's smaller holes
(a POST redirected to the Host header's site, the own origin taken from Host, an allowed
origin with a trailing slash, a client hanging up mid-body, thousands of field errors,
HEAD refused).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aio_pika.abc import AbstractQueue

from signup.settings import Settings
from signup.testing.processes import ServiceProcess, run_cli
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"
LIMIT = 5


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sign_up(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    body = {"email": f"{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD}
    async with http.post(f"{url}/user/signup", json=body, headers=headers or {}) as response:
        return response.status, await response.json(content_type=None)


def limited(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(rate_limit_per_ip=f"{LIMIT}/minute", **overrides)


# --- item 6: rate limits that hold ---------------------------------------------------


@pytest.mark.parametrize(
    "proxies",
    [
        pytest.param({"trust_forwarded_for": True}, id="peer-is-the-proxy"),
        pytest.param({"trusted_proxies": ["127.0.0.0/8", "::1"]}, id="trusted-proxies"),
    ],
)
async def test_a_client_written_forwarded_for_no_longer_opens_new_buckets(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    http: aiohttp.ClientSession,
    proxies: dict[str, Any],
) -> None:
    """Before: 30 x 201 against 20/minute, one new leftmost entry a request."""
    async with serving(limited(make_settings, **proxies), run_relay=False) as url:
        statuses = [
            (await sign_up(http, url, {"X-Forwarded-For": f"10.66.0.{i}, 198.51.100.9"}))[0]
            for i in range(3 * LIMIT)
        ]
        other = (await sign_up(http, url, {"X-Forwarded-For": "10.66.0.1, 198.51.100.10"}))[0]
    assert statuses == [201] * LIMIT + [429] * (2 * LIMIT)
    assert other == 201, "the address the proxy appended is what counts"


async def test_forwarded_for_from_a_peer_that_is_no_trusted_proxy_is_ignored(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    settings = limited(make_settings, trusted_proxies=["192.0.2.0/24"])
    async with serving(settings, run_relay=False) as url:
        statuses = [
            (await sign_up(http, url, {"X-Forwarded-For": f"198.51.100.{i}"}))[0]
            for i in range(2 * LIMIT)
        ]
    assert statuses == [201] * LIMIT + [429] * LIMIT


async def test_other_spellings_of_an_address_share_its_limit(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    """Before: each of these escaped a limit on 1.2.3.4."""
    spellings = ["::ffff:1.2.3.4", "01.02.03.04", "0x01020304", "16909060", "[::ffff:1.2.3.4]:1"]
    async with serving(limited(make_settings, trust_forwarded_for=True), run_relay=False) as url:
        used = [(await sign_up(http, url, {"X-Forwarded-For": "1.2.3.4"}))[0] for _ in range(LIMIT)]
        escaped = {
            spelling: (await sign_up(http, url, {"X-Forwarded-For": spelling}))[0]
            for spelling in spellings
        }
    assert used == [201] * LIMIT
    assert escaped == dict.fromkeys(spellings, 429)


async def test_one_ipv6_64_is_one_client(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    """Before: 25 addresses of one /64 made 25 sign-ups."""
    network = ipaddress.IPv6Network("2001:db8:16:6::/64")
    addresses = [str(network[random.getrandbits(64)]) for _ in range(25)]
    async with serving(limited(make_settings, trust_forwarded_for=True), run_relay=False) as url:
        statuses = [(await sign_up(http, url, {"X-Forwarded-For": a}))[0] for a in addresses]
        neighbour = (await sign_up(http, url, {"X-Forwarded-For": "2001:db8:16:7::1"}))[0]
    assert statuses.count(201) == LIMIT and statuses[LIMIT:] == [429] * (25 - LIMIT)
    assert neighbour == 201, "the next /64 is another client"


def test_several_processes_without_a_shared_store_refuse_to_start(
    tmp_path: Path, exchange_name: str
) -> None:
    """Before: SIGNUP_WEB_CONCURRENCY=2 in memory counted per process, 40 x 201 against 20."""
    env = {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/signup.db",
        "SIGNUP_EXCHANGE": exchange_name,
        "SIGNUP_WEB_CONCURRENCY": "2",
        "SIGNUP_RATE_LIMIT_PER_IP": "20/minute",
        "SIGNUP_REDIS_URL": "",
    }
    done = run_cli(env, "serve", "--port", "1", timeout=30)
    assert done.returncode != 0
    assert "SIGNUP_WEB_CONCURRENCY=2 with rate limits on needs SIGNUP_REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "ValidationError" not in done.stderr


async def test_several_processes_with_redis_share_one_count(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    # An address of this run's own, so that runs and other tests on this Redis never meet.
    client = str(ipaddress.IPv4Address(random.getrandbits(32) | 1))
    env = {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/signup.db",
        "SIGNUP_EXCHANGE": exchange_name,
        "SIGNUP_WEB_CONCURRENCY": "2",
        "SIGNUP_REDIS_URL": "redis://127.0.0.1:6379/0",
        "SIGNUP_RATE_LIMIT_PER_IP": f"{LIMIT}/minute",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_TRUST_FORWARDED_FOR": "true",
        "SIGNUP_ARGON2_MEMORY_KIB": "1024",
        "SIGNUP_ARGON2_TIME_COST": "1",
    }
    service = ServiceProcess(env, tmp_path / "serve.log", "--no-relay").start()
    try:
        statuses: list[int] = []
        for _ in range(4 * LIMIT):
            # A connection each, so that both processes take requests.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as http:
                statuses.append((await sign_up(http, service.url, {"X-Forwarded-For": client}))[0])
    finally:
        service.stop()
    assert statuses.count(201) == LIMIT and statuses.count(429) == 3 * LIMIT, statuses


# --- item 7: the web app's smaller holes ---------------------------------------------


async def test_a_post_with_a_trailing_slash_is_not_redirected_to_the_host_header(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    """Before: 307 to http://evil.example/user/signup, which re-sends the password."""
    body = {"email": "slash@example.com", "password": PASSWORD}
    async with serving(make_settings(), run_relay=False) as url:
        async with http.post(
            f"{url}/user/signup/",
            json=body,
            headers={"Host": "evil.example"},
            allow_redirects=False,
        ) as response:
            status, headers = response.status, response.headers
            answer = await response.read()
        async with http.get(
            f"{url}/signup/", headers={"Host": "evil.example"}, allow_redirects=False
        ) as page:
            page_status, location = page.status, page.headers.get("Location")
    assert status == 404 and "Location" not in headers
    assert headers["Content-Type"].startswith("application/problem+json")
    assert b"evil.example" not in answer and PASSWORD.encode() not in answer
    assert (page_status, location) == (308, "/signup"), "a typed /signup/ still finds the page"


async def test_a_dns_rebinding_page_is_cross_site_however_it_names_the_host(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    """Before: Origin equal to http://<Host> passed as the service's own origin."""
    settings = make_settings(site_url="https://signup.example/join")
    async with serving(settings, run_relay=False) as url:
        port = url.rsplit(":", 1)[1]
        rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        status, answer = await sign_up(http, url, rebound)
        same_host = {"Origin": url}  # the address the test connects to is not the site's
        status_local, _ = await sign_up(http, url, same_host)
        own, _ = await sign_up(http, url, {"Origin": "https://SIGNUP.example:443"})
    assert status == 403 and answer["type"] == "urn:signup:problem:cross-site"
    assert status_local == 403
    assert own == 201, "the origin of SIGNUP_SITE_URL is the service's own"


async def test_an_allowed_origin_written_with_a_slash_passes_guard_and_preflight(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    """Before: the guard let it through, the CORS preflight answered 400."""
    settings = make_settings(allowed_origins="https://Www.Partner.example:443/")
    partner = "https://www.partner.example"
    async with serving(settings, run_relay=False) as url:
        preflight = {
            "Origin": partner,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        async with http.options(f"{url}/user/signup", headers=preflight) as response:
            preflight_status = response.status
            allow_origin = response.headers.get("Access-Control-Allow-Origin")
        status, _ = await sign_up(http, url, {"Origin": partner})
    assert (preflight_status, allow_origin) == (200, partner)
    assert status == 201


async def test_a_client_that_hangs_up_mid_body_costs_one_info_line(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: two ERROR tracebacks of ~4.7 KB each."""
    caplog.set_level(logging.INFO)
    with structlog.testing.capture_logs() as logs:
        async with serving(make_settings(), run_relay=False) as url:
            port = int(url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /user/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"email": "gone@example.com", "pass'
            )
            await writer.drain()
            for _ in range(500):  # the route is waiting on the rest of the body
                await asyncio.sleep(0.01)
                if any(e.get("request_id") for e in logs) or reader.at_eof():
                    break
            writer.close()
            for _ in range(1000):  # until the app has seen the disconnect (or a test timeout)
                if any(e["event"] == "request.client_disconnected" for e in logs):
                    break
                await asyncio.sleep(0.01)
    gone = [e for e in logs if e["event"] == "request.client_disconnected"]
    assert len(gone) == 1 and gone[0]["log_level"] == "info"
    assert [e for e in logs if e["log_level"] in ("error", "critical", "exception")] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "Traceback" not in caplog.text


async def test_thousands_of_unknown_keys_get_a_bounded_answer(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue, http: aiohttp.ClientSession
) -> None:
    """Before: a 16 KiB body of 1,425 unknown keys got 1,427 field errors, 79 KB."""
    body = orjson.dumps({f"k{i:04}": 1 for i in range(1425)})
    assert len(body) <= 16 * 1024
    json = {"Content-Type": "application/json"}
    async with (
        serving(make_settings(), run_relay=False) as url,
        http.post(f"{url}/user/signup", data=body, headers=json) as response,
    ):
        status, raw = response.status, await response.read()
    answer = orjson.loads(raw)
    assert status == 422 and len(answer["errors"]) == 20
    assert "(1407 more not listed.)" in answer["detail"]
    assert len(raw) < 4096


async def test_head_is_answered_like_get_without_a_body(
    make_settings: Callable[..., Settings], bound_queue: AbstractQueue
) -> None:
    """Before: HEAD /signup and HEAD / were 405."""
    async with serving(make_settings(), run_relay=False) as url:
        port = int(url.rsplit(":", 1)[1])
        for path in ("/signup", "/"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()  # to the end: the server closes after the headers
            writer.close()
            head, _, rest = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"content-type: text/html" in head.lower()
            assert rest == b"", "a HEAD answer has no body"
