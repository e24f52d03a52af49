"""`signup serve` under bounded floods on loopback: its own limits hold, `/healthz` answers.

Security issue 16, item 5 (idle sockets held for ever, a 120 MB header read in full,
an unbounded Argon2 queue) and item 7 (the server's own error answers without the
security headers). Each flood runs while a separate process probes `/healthz` on a new
connection every 20 ms, as an orchestrator would (healthz_prober.py); every probe must
answer 200 within 100 ms (the one timed assertion, asked for by the issue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from healthz_prober import probing

from signup.entrypoints.web.server import PROBE_RESERVE as RESERVE
from signup.testing.processes import ServiceProcess

pytestmark = pytest.mark.e2e

MAX_CONNECTIONS = 64

PASSWORD = "violet tractor anthem"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    env = {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/signup.db",
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_IDENTITY_PROVIDER": "local",
        "SIGNUP_HEADER_TIMEOUT_SECONDS": "1",
        # Longer than the busy test holds its uploads mid-body (its places must stay busy).
        "SIGNUP_BODY_TIMEOUT_SECONDS": "6",
        "SIGNUP_KEEP_ALIVE_SECONDS": "1",
        "SIGNUP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "SIGNUP_ARGON2_QUEUE": "4",
    }
    process = ServiceProcess(env, tmp / "serve.log", "--no-relay").start()
    try:
        yield process
    finally:
        process.stop()


# ---- raw HTTP on loopback -----------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), raw[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)


async def exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send `raw`, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader, timeout: float = 10) -> Answer:
    """One answer with a Content-Length, leaving the connection open."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    answer = parse(head)
    answer.body = await reader.readexactly(int(answer.headers["content-length"]))
    return answer


def request(path: str = "/healthz", *, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


def assert_server_problem(answer: Answer, status: int, slug: str) -> dict[str, object]:
    assert answer.status == status, answer
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, (name, answer.headers)
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["connection"] == "close"
    assert answer.headers.get("x-request-id")
    problem: dict[str, object] = json.loads(answer.body)
    assert problem["type"] == f"urn:signup:problem:{slug}" and problem["status"] == status
    return problem


def answer_before_body(port: int, head: bytes) -> bytes:
    """Send a head announcing a body, wait for the answer to arrive, then send the body
    and read: a server that closed on the unread body resets the connection, and the
    answer waiting to be read is lost."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.replace(b"Expect: 100-continue\r\n", b""))
        readable, _, _ = select.select([sock], [], [], 10)
        assert readable, "no answer"
        with contextlib.suppress(OSError):
            sock.sendall(b"x" * 100)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def open_fds(service: ServiceProcess) -> int:
    assert service.process is not None
    return len(os.listdir(f"/proc/{service.process.pid}/fd"))


def peak_rss_mb(service: ServiceProcess) -> float:
    assert service.process is not None
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


# ---- the floods --------------------------------------------------------------------


async def test_malformed_requests_get_a_problem_with_the_security_headers(
    service: ServiceProcess,
) -> None:
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
    ):
        answer = parse(await exchange(service.port, raw))
        assert_server_problem(answer, 400, "malformed-request")


async def test_heads_past_the_caps_get_431(service: ServiceProcess) -> None:
    hundred = b"".join(b"X-H%d: v\r\n" % i for i in range(98))  # with Host and Connection
    ok = parse(await exchange(service.port, request(extra=hundred + b"Connection: close\r\n")))
    assert ok.status == 200
    too_many = parse(
        await exchange(service.port, request(extra=hundred + b"X-One-More: v\r\nX-Two: v\r\n"))
    )
    assert_server_problem(too_many, 431, "header-too-large")
    big_value = parse(await exchange(service.port, request(extra=b"X-Big: " + b"a" * 20_000)))
    assert_server_problem(big_value, 431, "header-too-large")
    long_url = parse(await exchange(service.port, request("/healthz?" + "a" * 20_000)))
    assert_server_problem(long_url, 431, "header-too-large")


async def test_a_flood_of_huge_headers_is_cut_short_and_health_still_answers(
    service: ServiceProcess,
) -> None:
    # 8 clients, each sending 64 MB headers again and again for 1.5 s (8,000 tries at most).
    clients, size, piece = 8, 64 * 1024 * 1024, b"a" * (256 * 1024)
    rss_before = peak_rss_mb(service)

    async def huge_header() -> int:
        _, writer = await asyncio.open_connection("127.0.0.1", service.port)
        sent = 0
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            while sent < size:
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), 10)
                sent += len(piece)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        return sent

    async def client() -> list[int]:
        deadline = time.monotonic() + 1.5
        tries: list[int] = []
        while time.monotonic() < deadline and len(tries) < 1000:
            tries.append(await huge_header())
        return tries

    with probing(service.port) as probes:
        sent = [
            n for tries in await asyncio.gather(*(client() for _ in range(clients))) for n in tries
        ]
    # The server stopped reading each at its cap (plus a read and the socket buffers):
    # nowhere near the 64 MB each try meant to send.
    print(f"{len(sent)} tries, at most {max(sent)} bytes sent of one")
    assert len(sent) >= clients and max(sent) < 16 * 1024 * 1024, sent
    assert peak_rss_mb(service) - rss_before < 50
    probes.assert_all_answered_in_time(at_least=10)


async def test_an_idle_flood_is_held_to_the_connection_cap_and_closed_in_time(
    service: ServiceProcess,
) -> None:
    flood, batch = 2000, 200
    baseline = open_fds(service)
    peak = baseline
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def watch_fds() -> None:
        nonlocal peak
        while True:
            peak = max(peak, open_fds(service))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_fds())
    try:
        with probing(service.port) as probes:
            for _ in range(flood // batch):
                held += await asyncio.gather(
                    *(asyncio.open_connection("127.0.0.1", service.port) for _ in range(batch))
                )
            # Every flood connection is closed by the server (made room for others, or
            # sent nothing within the header timeout), without a byte of answer.
            closings = await asyncio.wait_for(
                asyncio.gather(*(reader.read() for reader, _ in held)), 30
            )
    finally:
        watcher.cancel()
        for _, writer in held:
            writer.close()
    assert closings == [b""] * flood
    # 2,000 sockets from one host: the server held its cap and the probes' reserve, and
    # for a loop turn at most the connections of one accept burst (<= a batch) past it.
    print(f"server descriptors: {baseline} before, {peak} at most")
    assert peak - baseline <= MAX_CONNECTIONS + RESERVE + batch, (baseline, peak)
    probes.assert_all_answered_in_time(at_least=10)


async def test_slow_or_unfinished_heads_are_answered_408_and_idle_ones_closed(
    service: ServiceProcess,
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """One byte of header every 100 ms until the server answers (at most 10 s)."""
        for _ in range(100):
            writer.write(b"a")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            try:
                # read(n) gives up nothing it has not returned when it times out.
                first = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            return first + await asyncio.wait_for(reader.read(), 5)
        raise AssertionError("the server kept reading a head for 10 s")

    # A first request whose head never ends.
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert_server_problem(parse(await trickle(reader, writer)), 408, "header-timeout")
    writer.close()

    # A second request on a kept-alive connection: its own time from its first byte.
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(request())
    assert (await read_answer(reader)).status == 200
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert_server_problem(parse(await trickle(reader, writer)), 408, "header-timeout")
    writer.close()

    # Kept alive and then silent: closed after the keep-alive time, without an answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(request())
    assert (await read_answer(reader)).status == 200
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()

    # Connected and silent: closed after the header timeout, without an answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_a_body_that_never_finishes_is_answered_408_and_closed(
    service: ServiceProcess,
) -> None:
    """A slow-body client (the head whole, the body one byte of a hundred, then silence)
    must not hold a connection for ever: with every place held that way, nobody else
    would be served."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        b"POST /user/signup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    assert_server_problem(parse(raw), 408, "body-timeout")

    # A body that comes whole, even in pieces within the time, is served as before.
    body = json.dumps({"email": "slow-body@example.com", "password": PASSWORD}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        b"POST /user/signup HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body[:5]
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the body in two reads: the timer is armed, then cancelled
    writer.write(body[5:])
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert parse(raw).status in (201, 503), raw[:300]


async def test_with_every_connection_busy_only_health_probes_are_served(
    service: ServiceProcess,
) -> None:
    busy: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    upload = (
        b"POST /user/signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 100\r\n\r\n"
    )
    try:
        with probing(service.port) as probes:
            # Each upload is in flight once the app asks for its body (the server then
            # says 100 Continue); their bodies never come.
            for _ in range(MAX_CONNECTIONS):
                reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
                writer.write(upload)
                busy.append((reader, writer))
            for reader, _ in busy:
                line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert line == b"HTTP/1.1 100 Continue\r\n\r\n"
            # A client still sending its body reads its 503 too (no reset).
            refused = parse(await asyncio.to_thread(answer_before_body, service.port, upload))
            assert_server_problem(refused, 503, "server-busy")
            # Probes (and only they) still get in; the rest get 503 with Retry-After.
            # Held so for a second (at most 1,000 rounds) while the prober probes.
            deadline, rounds = time.monotonic() + 1.0, 0
            while time.monotonic() < deadline and rounds < 1000:
                rounds += 1
                page = parse(await exchange(service.port, request("/signup")))
                assert_server_problem(page, 503, "server-busy")
                assert page.headers["retry-after"] == "1"
                health = parse(await exchange(service.port, request()))
                assert health.status == 200 and health.headers["connection"] == "close"
    finally:
        for _, writer in busy:
            writer.close()
    probes.assert_all_answered_in_time(at_least=3)
    # Once the uploads are gone, the server serves everyone again.
    for _ in range(100):
        page = parse(
            await exchange(service.port, request("/signup", extra=b"Connection: close\r\n"))
        )
        if page.status == 200:
            break
        await asyncio.sleep(0.05)
    assert page.status == 200, page


async def test_a_signup_burst_past_the_argon2_queue_gets_503_with_retry_after(
    service: ServiceProcess,
) -> None:
    # 16 clients signing up one after the other for 1.5 s (at most 1,500 sign-ups): more
    # than the 2 hashing threads and the 4 places in their queue.
    clients, most = 16, 1500
    answers: list[tuple[int, str | None, dict[str, object]]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:

        async def client(c: int) -> None:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and len(answers) < most:
                body = {"email": f"burst{c}-{len(answers)}@example.com", "password": PASSWORD}
                async with http.post(f"{service.url}/user/signup", json=body) as response:
                    problem = await response.json(content_type=None)
                    answers.append((response.status, response.headers.get("Retry-After"), problem))

        with probing(service.port) as probes:
            await asyncio.gather(*(client(c) for c in range(clients)))
    statuses = [status for status, _, _ in answers]
    print(f"{statuses.count(201)} created, {statuses.count(503)} refused")
    assert set(statuses) <= {201, 503}, statuses
    assert 201 in statuses and 503 in statuses, statuses
    for status, retry_after, problem in answers:
        if status == 503:
            assert retry_after is not None and int(retry_after) >= 1
            assert problem["type"] == "urn:signup:problem:provider-unavailable"
    probes.assert_all_answered_in_time(at_least=10)
