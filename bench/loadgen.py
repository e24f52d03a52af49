"""Open-loop, constant-rate load generator (wrk2-style), a process of its own.

    python -m bench.loadgen URL --rate R --duration D --prefix P [--connections C]

Request i is due at start + i/R whatever happened to the earlier ones; its latency is
counted from that due time, so a server (or a generator) that falls behind shows it
in the figures instead of slowing the offered load down (no coordinated omission).
Every request carries a unique e-mail `P-0-i@example.com`. At the end it waits for
every request in flight and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

import aiohttp
import orjson

PASSWORD = "Quiet-Harbour-Lantern-42"


# docs/form.example.toml's required and some optional fields, and its consents (--form).
FORM = {
    "fields": {"role": "developer", "company": "ACME", "country": "DE", "birthday": "1990-01-01"},
    "consents": {"terms": True, "marketing": True},
}


def body(prefix: str, i: int, minimal: bool, form: bool = False) -> bytes:
    data: dict[str, object] = {"email": f"{prefix}-0-{i}@example.com", "password": PASSWORD}
    if not minimal:
        data |= {"given_name": "Ada", "family_name": "Lovelace"}
    if form:
        data |= FORM
    return orjson.dumps(data)


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    if args.closed:
        return await run_closed(args)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    headers = {"Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    late = 0.0  # how far behind schedule the generator itself ever was (s)
    total = int(args.rate * args.duration)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            try:
                async with session.post(
                    args.url, data=body(args.prefix, i, args.minimal, args.form), headers=headers
                ) as response:
                    await response.read()
                    statuses[response.status] += 1
            except Exception as exc:
                errors[type(exc).__name__] += 1
                return
            latencies.append(loop.time() - due)

        tasks: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        i = 0
        while i < total:
            due = start + i / args.rate
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
                now = loop.time()
            late = max(late, now - due)
            while i < total and start + i / args.rate <= now:
                task = loop.create_task(one(i, start + i / args.rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        sent_for = loop.time() - start
        if tasks:
            await asyncio.wait(tasks)
        elapsed = loop.time() - start
    latencies.sort()
    return {
        "sent": total,
        "offered_rate": args.rate,
        "send_seconds": sent_for,
        "elapsed_seconds": elapsed,
        "generator_late_max_ms": late * 1000,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "latency_ms": {
            "p50": percentile(latencies, 50) * 1000,
            "p90": percentile(latencies, 90) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "max": (latencies[-1] if latencies else float("nan")) * 1000,
        },
    }


async def run_closed(args: argparse.Namespace) -> dict[str, object]:
    """`--closed C`: C clients, each sending its next request when the last is answered
    (what wrk does; the fallback when wrk cannot be installed)."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=args.closed, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    headers = {"Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    counter = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time()
        stop = start + args.duration

        async def client() -> None:
            nonlocal counter
            while loop.time() < stop:
                counter += 1
                sent = loop.time()
                try:
                    async with session.post(
                        args.url,
                        data=body(args.prefix, counter, args.minimal, args.form),
                        headers=headers,
                    ) as response:
                        await response.read()
                except Exception as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if loop.time() <= stop:  # like wrk: answers after the end are not counted
                    statuses[response.status] += 1
                    latencies.append(loop.time() - sent)

        await asyncio.gather(*(client() for _ in range(args.closed)))
    latencies.sort()
    return {
        "sent": counter,
        "elapsed_seconds": args.duration,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "latency_ms": {
            "p50": percentile(latencies, 50) * 1000,
            "p90": percentile(latencies, 90) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "max": (latencies[-1] if latencies else float("nan")) * 1000,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--closed", type=int, default=0, help="closed loop with this many clients")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--connections", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--minimal", action="store_true", help="e-mail and password only")
    parser.add_argument("--form", action="store_true", help="docs/form.example.toml's answers")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(run(args))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
