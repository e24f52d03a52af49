"""Row 3: the relay alone against raw aio-pika, a process of its own.

    python -m bench.relay_bench --amqp URL --exchange X --queue Q --dir D [--events N] [--runs R]

Each run: a fresh SQLite database (migrated as `signup serve` does) is pre-filled with N
`user.new` events through the outbox repository; then

- relay: the service's own wiring (`bootstrap(Settings())`: Relay + AmqpPublisher with
  the default batch size, the SQLite lease) publishes until every row is marked
  published; timed from the start of `Relay.run` to the last mark (the connection to
  the broker is opened before the clock starts);
- raw: aio-pika alone publishes the same N messages (same body and properties,
  persistent, mandatory) on a confirm channel, keeping at most the relay's batch size
  unconfirmed at any time (a sliding window: never fewer in flight than the relay).

A durable queue is bound so the mandatory messages are routed, and purged between runs.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import orjson
from sqlalchemy import select

from signup.adapters import tables as t
from signup.adapters.broker import AmqpPublisher
from signup.adapters.database import migrate
from signup.bootstrap import bootstrap
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.service_layer.ports import OutboxEntry
from signup.service_layer.unit_of_work import Transaction
from signup.settings import Settings


def make_event(i: int) -> UserRegistered:
    now = datetime.now(UTC)
    return UserRegistered(
        id=str(uuid.uuid4()),
        source="urn:signup:naked-coders",
        time=now,
        data=UserRegisteredData(
            user_id=f"auth0|{i:024x}",
            email=f"relay-0-{i}@example.com",
            email_verified=False,
            given_name="Ada",
            family_name="Lovelace",
            name="Ada Lovelace",
            created_at=now,
            identity_provider="auth0",
        ),
    )


async def prefill(settings: Settings, events: int) -> None:
    container = bootstrap(settings)
    try:
        chunk = 500
        for start in range(0, events, chunk):
            batch = [make_event(i) for i in range(start, min(events, start + chunk))]

            async def add(tx: Transaction, batch: list[UserRegistered] = batch) -> None:
                for event in batch:
                    await tx.outbox.add(event)

            await container.uow.run(add)
    finally:
        await container.aclose()


async def run_relay(settings: Settings, events: int) -> dict[str, float]:
    container = bootstrap(settings)
    publisher = container.publisher
    assert isinstance(publisher, AmqpPublisher)
    await publisher._ready()  # connect before the clock starts
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(container.relay.run(stop))
    while container.relay.published < events:
        if task.done():
            task.result()
            raise RuntimeError("relay stopped early")
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    stop.set()
    await task

    async def pending(tx: Transaction) -> int:
        return (await tx.outbox.status()).pending

    left = await container.uow.read(pending)
    await container.aclose()
    return {"events": events, "seconds": elapsed, "per_s": events / elapsed, "pending": left}


async def load_entries(settings: Settings) -> list[OutboxEntry]:
    container = bootstrap(settings)
    try:
        async with container.uow.reader.connect() as conn:
            o = t.outbox.c
            rows = await conn.execute(
                select(o.event_id, o.routing_key, o.event_type, o.payload, o.created_at).order_by(
                    o.id
                )
            )
            return [
                OutboxEntry(
                    r.event_id, r.routing_key, r.event_type, r.payload.encode(), r.created_at
                )
                for r in rows
            ]
    finally:
        await container.aclose()


async def run_raw(
    url: str, exchange_name: str, entries: list[OutboxEntry], window: int
) -> dict[str, float]:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    slots = asyncio.Semaphore(window)
    failed = 0

    async def one(entry: OutboxEntry) -> None:
        nonlocal failed
        try:
            await exchange.publish(
                aio_pika.Message(
                    body=entry.payload,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=entry.event_id,
                    content_type="application/cloudevents+json",
                    type=entry.event_type,
                    timestamp=entry.created_at,
                    app_id="signup",
                ),
                entry.routing_key,
                mandatory=True,
                timeout=10,
            )
        except Exception:
            failed += 1
        finally:
            slots.release()

    started = time.perf_counter()
    tasks = []
    for entry in entries:
        await slots.acquire()
        tasks.append(asyncio.create_task(one(entry)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    await connection.close()
    return {
        "events": len(entries),
        "seconds": elapsed,
        "per_s": len(entries) / elapsed,
        "failed": failed,
    }


async def purge(url: str, exchange: str, queue: str, declare: bool, delete: bool = False) -> int:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    q = await channel.declare_queue(queue, durable=True)
    if declare:
        await q.bind(ex, "user.new")
    count = q.declaration_result.message_count or 0
    await q.purge()
    if delete:
        await q.delete(if_unused=False, if_empty=False)
        await ex.delete()
    await connection.close()
    return int(count)


async def main(args: argparse.Namespace) -> dict[str, object]:
    runs = []
    await purge(args.amqp, args.exchange, args.queue, declare=True)
    try:
        for n in range(args.runs):
            db = Path(args.dir) / f"relay-{n}.db"
            url = f"sqlite+aiosqlite:///{db}"
            os.environ.update(
                SIGNUP_DATABASE_URL=url, SIGNUP_EXCHANGE=args.exchange, SIGNUP_AMQP_URL=args.amqp
            )
            settings = Settings()
            await asyncio.to_thread(migrate, url)
            await prefill(settings, args.events)
            entries = await load_entries(settings)
            relay = await run_relay(settings, args.events)
            relay["queued"] = await purge(args.amqp, args.exchange, args.queue, declare=False)
            raw = await run_raw(args.amqp, args.exchange, entries, settings.relay_batch_size)
            raw["queued"] = await purge(args.amqp, args.exchange, args.queue, declare=False)
            runs.append({"relay": relay, "raw": raw, "batch": settings.relay_batch_size})
    finally:
        await purge(args.amqp, args.exchange, args.queue, declare=False, delete=True)
    return {"runs": runs}


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_bench")
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from signup.log_config import configure_logging

    configure_logging("json", "WARNING")
    import uvloop

    print(orjson.dumps(uvloop.run(main(args))).decode(), flush=True)


if __name__ == "__main__":
    cli()
