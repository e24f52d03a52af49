"""Deliveries/s that `POST /hooks/auth0` accepts durably, against a bare endpoint, in the
same run (issue 19):

    python -m bench.hooks [--runs 2] [--duration 8] [--connections 64]

- `bare`: `bare_hook_app`, on the same stack as `signup serve` (bench.serve_app): it
  checks the bearer token in constant time, parses the JSON and answers 204. Nothing is
  written: the stack's own ceiling for this endpoint.
- `service`: `signup serve` (Auth0 mode against the stand-in, SQLite file, the relay
  publishing to RabbitMQ) with SIGNUP_AUTH0_EVENTS_TOKEN: each 204 follows the commit of
  the account's `user.new` and its dedupe row (group commit, synced).

The load is a closed loop of `--connections` aiohttp clients in this process, each
posting Auth0-shaped `user.created` events of accounts never seen before, as fast as the
answers come; the two targets alternate, `--runs` times each. After a service run the
database must hold one announced account per 204 (checked). The figures are in
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI, Request
from rich.progress import Progress
from starlette.responses import Response

from bench.harness import Options, Session, console

TOKEN = "bench-hook-token-0123456789abcdef"


def bare_hook_app() -> FastAPI:
    app = FastAPI()
    expected = TOKEN.encode()

    @app.post("/hooks/auth0", status_code=204)
    async def hook(request: Request) -> Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, expected):
            return Response(status_code=401)
        event = orjson.loads(await request.body())
        if not isinstance(event, dict) or "id" not in event:
            return Response(status_code=400)
        return Response(status_code=204)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def event(prefix: str, n: int) -> bytes:
    user_id = f"google-oauth2|{prefix}{n}"
    return orjson.dumps(
        {
            "id": f"evt_{prefix}{n}",
            "source": "urn:auth0:bench:users",
            "specversion": "1.0",
            "type": "user.created",
            "time": "2026-12-05T10:00:00.000Z",
            "data": {
                "object": {
                    "user_id": user_id,
                    "email": f"{prefix}{n}@example.com",
                    "email_verified": True,
                    "name": "Ada Lovelace",
                    "given_name": "Ada",
                    "family_name": "Lovelace",
                    "created_at": "2026-12-05T10:00:00.000Z",
                    "identities": [
                        {
                            "connection": "google-oauth2",
                            "provider": "google-oauth2",
                            "isSocial": True,
                            "user_id": str(n),
                        }
                    ],
                }
            },
        }
    )


async def load(url: str, prefix: str, seconds: float, connections: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    counter = 0
    ok = 0
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            nonlocal counter, ok
            while time.monotonic() < deadline:
                counter += 1
                body = event(prefix, counter)
                started = time.monotonic()
                async with http.post(f"{url}/hooks/auth0", data=body, headers=headers) as r:
                    await r.read()
                latencies.append(time.monotonic() - started)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                ok += 200 <= r.status < 300

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(connections)))
        span = time.monotonic() - began
    latencies.sort()
    return {
        "per_s": ok / span,
        "ok": ok,
        "statuses": statuses,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
    }


def announced(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM announced_accounts").fetchone()[0])


async def run(o: Options) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        s = Session(o, progress)
        try:
            await s.start_standin()
            for n in range(o.runs):
                proc, url = await s.start_app(f"bare-hook-{n}", "bench.hooks:bare_hook_app")
                await load(url, f"wb{n}-", 1, 16)
                bare = await load(url, f"b{n}-", o.duration, o.connections)
                await s.stop(proc)
                results.append({"target": "bare", **bare})
                console.print(results[-1])
                db = s.tmp / f"hooks-{n}.db"
                env = s.service_env(db, "auth0") | {"SIGNUP_AUTH0_EVENTS_TOKEN": TOKEN}
                proc, url = await s.start_service_env(f"signup-hooks-{n}", env)
                await load(url, f"ws{n}-", 1, 16)
                before = announced(db)
                served = await load(url, f"s{n}-", o.duration, o.connections)
                durable = announced(db) - before
                await s.stop(proc)
                assert durable == served["ok"], f"{served['ok']} answered 2xx, {durable} kept"
                results.append({"target": "service", **served, "durable": durable})
                console.print(results[-1])
        finally:
            await s.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    o = Options(runs=args.runs, duration=args.duration, connections=args.connections)
    results = asyncio.run(run(o))
    medians = {}
    for target in ("bare", "service"):
        mine = [r for r in results if r["target"] == target]
        medians[target] = {
            k: statistics.median(r[k] for r in mine) for k in ("per_s", "p50_ms", "p99_ms")
        }
        runs = ", ".join(format(r["per_s"], ".0f") for r in mine)
        console.print(
            f"{target}: {medians[target]['per_s']:.0f} deliveries/s, p50 "
            f"{medians[target]['p50_ms']:.1f} ms, p99 {medians[target]['p99_ms']:.1f} ms "
            f"(runs: {runs})"
        )
    console.print(f"service / bare: {medians['service']['per_s'] / medians['bare']['per_s']:.3f}")


if __name__ == "__main__":
    main()
