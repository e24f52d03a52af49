"""The app's own CPU per sign-up, in process: no server, no Auth0 call, no load generator.

    python -m bench.inprocess [--signups 8000] [--concurrency 64] [--provider-latency 0.005]
                              [--variant full|stub|bare] [--broker AMQP_URL] [--runs 3]

Requests go straight into the ASGI app (the service's middleware, route, registration
service, SQLite unit of work and in-process relay, on a temporary SQLite file) from
`--concurrency` coroutines; the identity provider is a fake that answers after
`--provider-latency` seconds, and the relay's publisher confirms at once (or, with
`--broker`, is the real one, to an exchange and queue of this run's own). It prints the
CPU time of the thread per sign-up, which leaves out uvicorn, the Auth0 client and the
other processes: a change to the service's own work shows here when the end-to-end
figures drown it. The machine's speed still drifts (by half within the hour on the
2-core VM), so compare trees in interleaved runs. `--variant stub` answers from a stubbed
registration (the web layer alone); `--variant bare` serves ceiling (a). The service's log
lines go to stderr as `signup serve` writes them: send them to /dev/null.

Before/after, interleaved (an older tree unpacked with `git archive <commit> src | tar -x -C
/tmp/old`):

    for i in 1 2 3; do PYTHONPATH=/tmp/old/src python -m bench.inprocess --runs 1 2>/dev/null
                       python -m bench.inprocess --runs 1 2>/dev/null; done
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from signup.adapters.broker import AmqpPublisher
from signup.adapters.database import migrate
from signup.bootstrap import bootstrap, utc_now
from signup.domain.commands import RegisterUser
from signup.domain.model import Applicant, CreatedAccount
from signup.entrypoints.web.app import create_app
from signup.log_config import configure_logging
from signup.service_layer.ports import EventPublisher, OutboxEntry, PublishResult
from signup.service_layer.registration import Registered
from signup.settings import Settings
from signup.testing.fakes import FakeIdentityProvider, FakePublisher

PASSWORD = "Quiet-Harbour-Lantern-42"
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class SlowProvider(FakeIdentityProvider):
    """The fake provider, answering after a delay (Auth0's round trip, without its CPU)."""

    def __init__(self, latency: float) -> None:
        super().__init__(utc_now)
        self.latency = latency

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount:
        await asyncio.sleep(self.latency)
        return await super().create_user(applicant, password)


class CountingPublisher:
    """Counts what the publisher it wraps confirmed: a run ends when every event is out."""

    def __init__(self, inner: EventPublisher) -> None:
        self.inner = inner
        self.confirmed = 0

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        result = await self.inner.publish(entries)
        self.confirmed += len(result.confirmed)
        return result

    async def close(self) -> None:
        await self.inner.close()


def request_scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/user/signup",
        "raw_path": b"/user/signup",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def sign_up(app: ASGIApp, number: int, tag: str) -> None:
    body = orjson.dumps(
        {
            "email": f"{tag}-{number}@example.com",
            "password": PASSWORD,
            "given_name": "Ada",
            "family_name": "Lovelace",
        }
    )
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client never goes away
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(request_scope(body), receive, send)
    if statuses != [201]:
        raise RuntimeError(f"sign-up {number} answered {statuses}")


async def load(app: ASGIApp, signups: int, concurrency: int, tag: str) -> None:
    counter = iter(range(signups))

    async def client() -> None:
        for number in counter:
            await sign_up(app, number, tag)

    await asyncio.gather(*(client() for _ in range(concurrency)))


@contextlib.asynccontextmanager
async def bound_queue(amqp_url: str | None, exchange: str) -> AsyncIterator[None]:
    """With a real broker: this run's exchange, and a queue bound to it, deleted after."""
    if not amqp_url:
        yield
        return
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    try:
        declared = await channel.declare_exchange(
            exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(f"{exchange}.q", durable=True)
        await queue.bind(declared, "user.new")
        yield
    finally:
        await channel.queue_delete(f"{exchange}.q")
        await channel.exchange_delete(exchange)
        await connection.close()


def build(args: argparse.Namespace, url: str, exchange: str) -> tuple[Any, CountingPublisher]:
    """The app to measure, and the publisher its relay (if any) publishes through."""
    real = AmqpPublisher(args.broker, exchange) if args.broker else None
    publisher = CountingPublisher(real or FakePublisher())
    if args.variant == "bare":
        from bench.ceilings import bare_app

        return bare_app(), publisher
    settings = Settings(
        _env_file=None,
        database_url=url,
        identity_provider="auth0",
        auth0_domain="inprocess.auth0.local",
        auth0_client_id="inprocess",
        auth0_client_secret="inprocess",
        rate_limit_per_ip="",
        rate_limit_per_email="",
    )
    container = bootstrap(
        settings, provider=SlowProvider(args.provider_latency), publisher=publisher, clock=utc_now
    )
    if args.variant == "stub":

        async def registered(cmd: RegisterUser) -> Registered:
            return Registered("auth0|stub", cmd.applicant.email)

        container.registration.register = registered  # type: ignore[method-assign]
    return create_app(settings, container=container), publisher


async def one_run(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    url = f"sqlite+aiosqlite:///{folder / f'{uuid.uuid4().hex[:8]}.db'}"
    await asyncio.to_thread(migrate, url)
    exchange = f"bench.inprocess.{uuid.uuid4().hex[:8]}"
    app, publisher = build(args, url, exchange)
    warm = min(args.signups, 2_000)
    async with bound_queue(args.broker, exchange), app.router.lifespan_context(app):
        await load(app, warm, args.concurrency, "warm")
        started, cpu = time.perf_counter(), time.thread_time()
        await load(app, args.signups, args.concurrency, "run")
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - started
        deadline = time.monotonic() + 30
        while args.variant == "full" and publisher.confirmed < warm + args.signups:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {publisher.confirmed} events were confirmed")
            await asyncio.sleep(0.01)
    return {"cpu_us": cpu / args.signups * 1e6, "per_s": args.signups / wall}


async def main(args: argparse.Namespace) -> None:
    # As `signup serve` logs: a JSON line a sign-up, to stderr (send it to /dev/null).
    configure_logging("json", "INFO")
    folder = Path(tempfile.mkdtemp(prefix="signup-inprocess-"))
    try:
        runs = [await one_run(args, folder) for _ in range(args.runs)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cpu = [r["cpu_us"] for r in runs]
    print(
        f"{args.variant}: {statistics.median(cpu):.0f} us of CPU a sign-up "
        f"(runs {', '.join(f'{c:.0f}' for c in cpu)}), "
        f"{statistics.median(r['per_s'] for r in runs):,.0f}/s; "
        f"{args.signups:,} sign-ups, {args.concurrency} in flight, "
        f"provider {args.provider_latency * 1000:g} ms" + (", real broker" if args.broker else "")
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--signups", type=int, default=8_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--provider-latency", type=float, default=0.005)
    parser.add_argument("--variant", choices=["full", "stub", "bare"], default="full")
    parser.add_argument("--broker", default=None, help="publish to this AMQP URL")
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse()))
