"""Rows 6 and 7: the outbox after years of traffic, and a soak.

Row 6 (`--rows 6`, in `make bench`): a service on its own SQLite file; its outbox filled
straight into the database (no sign-ups) to 10,000 and then to 1,000,000 published rows;
at each size `/metrics` and `/readyz` (both on the operations port) are asked 1,000
times one after the other on one kept-alive connection. Beside them, what the status query before
issue 18 item 5 (count of every published row, min over the pending ones) costs on the
same file, and `signup outbox status` (the CLI, which still counts exactly).

Row 7 (`--rows 7`, or `--rows soak`; opt-in, ~12 minutes): Auth0 mode with the stand-in;
the maximum sign-ups/s measured over 10 s, then sign-ups at half that rate for
`--soak-minutes` (10) minutes, one minute at a time; after each minute the service's RSS,
the database files' size, the outbox's rows and that minute's event lag are sampled.
The outbox's and the settled sign-ups' retention is set to 2 minutes, pruned every 15 s,
so pruning runs within the soak and the outbox's and the database's size must level off.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from bench.procs import memory_of_tree

if TYPE_CHECKING:
    from bench.harness import Line, Session

PAYLOAD = (
    '{"specversion":"1.0","type":"user.new","source":"urn:signup:bench","id":"%s",'
    '"time":"2026-01-01T00:00:00.000Z","datacontenttype":"application/json","data":'
    '{"user_id":"auth0|0123456789abcdef01234567","email":"someone@example.com",'
    '"given_name":"Some","family_name":"One","email_verified":false}}'
)
PROBES = 1000
SOAK_RETENTION_SECONDS = 120


def fill(db: Path, count: int) -> float:
    """Insert `count` published rows in one transaction; seconds taken."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(tzinfo=None)
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as conn:

        def rows() -> Any:
            for n in range(count):
                event_id = str(uuid.uuid4())
                # Spread over the last 6 days: inside the 7-day retention, none is pruned.
                at = (now - timedelta(seconds=n % 518_400)).isoformat(sep=" ")
                yield (event_id, "user.new", "user.new", PAYLOAD % event_id, at, at, 1)

        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO outbox (event_id, event_type, routing_key, payload, created_at, "
            "published_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
        conn.execute("COMMIT")
    return time.perf_counter() - started


def old_status_ms(db: Path) -> float:
    """The status query before issue 18 item 5, on the same file (median of 3), as the
    schema before migration 0004 planned it."""
    times = []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(
                "SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL"
            ).fetchone()
            # NOT INDEXED: the plan it had before 0004 (no index could serve it then).
            conn.execute(
                "SELECT count(*) FROM outbox NOT INDEXED WHERE published_at IS NOT NULL"
            ).fetchone()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def probe(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    for _ in range(20):  # warm-up
        async with session.get(url) as answer:
            await answer.read()
    times = []
    for _ in range(PROBES):
        started = time.perf_counter()
        async with session.get(url) as answer:
            await answer.read()
            assert answer.status == 200, (url, answer.status)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[int(len(times) * 0.99) - 1],
        "mean_ms": statistics.fmean(times),
    }


def cli_status_seconds(s: Session, env: dict[str, str]) -> float:
    from bench.harness import BIN

    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "signup"), "outbox", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"signup outbox status failed: {done.stderr[-1000:]}")
    return time.perf_counter() - started


async def row6(s: Session) -> dict[str, Any]:
    from bench.harness import BIN, free_port

    db = s.tmp / "scale.db"
    env = s.service_env(db, "local")
    port = free_port()
    ops = f"http://127.0.0.1:{env['SIGNUP_OPS_PORT']}"
    proc = await s.timed(
        "row 6: starting a service",
        5,
        s.start(
            "scale",
            [str(BIN / "signup"), "serve", "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/healthz",
        ),
    )
    sizes: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            have = 0
            for target in (10_000, 1_000_000):
                seconds = await s.timed(
                    f"row 6: filling the outbox to {target:,} rows",
                    target / 150_000,
                    asyncio.to_thread(fill, db, target - have),
                )
                have = target
                metrics = await probe(http, f"{ops}/metrics")
                # The operations port's /readyz: the one that reads the outbox.
                readyz = await probe(http, f"{ops}/readyz")
                sizes[str(target)] = {
                    "fill_seconds": seconds,
                    "metrics": metrics,
                    "readyz": readyz,
                    "old_status_ms": await asyncio.to_thread(old_status_ms, db),
                    "cli_status_seconds": await asyncio.to_thread(cli_status_seconds, s, env),
                    "db_bytes": db.stat().st_size,
                }
                s.advance()
    finally:
        await s.stop(proc)
    return {"sizes": sizes}


def _files_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def _outbox_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def row7(s: Session, minutes: int = 10) -> dict[str, Any]:
    from bench.harness import BIN, closed_load, free_port, rate_load

    o = s.options
    if not s.standin_url:
        await s.timed("row 7: starting the Auth0 stand-in", 5, s.start_standin())
    if s.consumer.process is None:
        await s.timed("row 7: starting the event consumer", 2, s.consumer.start())
    db = s.tmp / "soak.db"
    env = s.service_env(db, "auth0") | {
        "SIGNUP_OUTBOX_RETENTION_DAYS": f"{SOAK_RETENTION_SECONDS / 86400:.8f}",
        "SIGNUP_SIGNUP_RETENTION_DAYS": f"{SOAK_RETENTION_SECONDS / 86400:.8f}",
        "SIGNUP_PRUNE_EVERY_SECONDS": "15",
    }
    port = free_port()
    proc = await s.timed(
        "row 7: starting the service",
        5,
        s.start(
            "soak",
            [str(BIN / "signup"), "serve", "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/healthz",
        ),
    )
    url = f"http://127.0.0.1:{port}/user/signup"
    samples: list[dict[str, Any]] = []
    try:
        await closed_load(s.wrk, url, "soakw", 2, 64)  # warm-up
        top = await s.timed(
            "row 7: the maximum", 10, closed_load(s.wrk, url, "soakmax", 10, o.connections)
        )
        rate = top.per_s / 2
        for minute in range(minutes):
            prefix = f"soak{minute}"
            load = await s.timed(
                f"row 7: minute {minute + 1}/{minutes} at {rate:.0f}/s",
                60,
                rate_load(url, prefix, rate, 60),
            )
            await asyncio.sleep(1)  # the minute's last events reach the consumer
            report = await s.consumer.ask("report", prefix)
            rss, _pss = memory_of_tree(proc.pid)
            samples.append(
                {
                    "minute": minute + 1,
                    "signups_per_s": load.per_s,
                    "errors": load.errors,
                    "rss_mib": rss / 1024,
                    "db_files_mib": _files_bytes(db) / 2**20,
                    "outbox_rows": await asyncio.to_thread(_outbox_rows, db),
                    "lag_p50_ms": report["lag_ms"]["p50"],
                    "lag_p99_ms": report["lag_ms"]["p99"],
                    "delivered": report["distinct"],
                }
            )
            s.advance()
    finally:
        await s.stop(proc)
    return {"max_per_s": top.per_s, "rate": rate, "samples": samples}


def lines(results: dict[str, Any]) -> list[Line]:
    from bench.harness import Line

    out: list[Line] = []
    if "row6" in results:
        sizes = results["row6"]["sizes"]
        small, large = sizes["10000"], sizes["1000000"]
        for key, label in (("metrics", "/metrics (ops port)"), ("readyz", "/readyz")):
            a, b = small[key]["p50_ms"], large[key]["p50_ms"]
            out.append(
                Line(
                    "6",
                    f"{label} p50 (p99) at 10k; at 1M published rows, ms",
                    f"{a:.2f} ({small[key]['p99_ms']:.2f}); {b:.2f} ({large[key]['p99_ms']:.2f})",
                    "1M ≤ 1.5 × 10k",
                    b <= 1.5 * a + 0.2,
                )
            )
        out.append(
            Line(
                "6",
                "the status query before item 5 at 10k; at 1M, ms",
                f"{small['old_status_ms']:.1f}; {large['old_status_ms']:.1f}",
            )
        )
    if "row7" in results:
        soak = results["row7"]
        samples = soak["samples"]
        first, last = samples[0], samples[-1]
        out.append(
            Line(
                "7",
                f"soak at {soak['rate']:.0f}/s (half of {soak['max_per_s']:.0f}) "
                f"for {len(samples)} min: RSS first → last minute, MiB",
                f"{first['rss_mib']:.0f} → {last['rss_mib']:.0f}",
            )
        )
        out.append(
            Line(
                "7",
                "outbox rows; database files, MiB (first → last minute)",
                f"{first['outbox_rows']:,} → {last['outbox_rows']:,}; "
                f"{first['db_files_mib']:.0f} → {last['db_files_mib']:.0f}",
            )
        )
        worst = max(x["lag_p99_ms"] for x in samples)
        out.append(
            Line("7", "event lag p99, worst minute, ms", f"{worst:.1f}", "≤ 50", worst <= 50)
        )
    return out


def details(results: dict[str, Any]) -> list[str]:
    """results.md: row 6 at each size, and row 7 minute by minute."""
    out: list[str] = []
    if "row6" in results:
        out += [
            "",
            "### Row 6: the outbox at 10k and 1M published rows (SQLite)",
            "",
            "| rows | /metrics p50/p99/mean ms | /readyz p50/p99/mean ms | status before item 5 ms "
            "| `signup outbox status` s | database MiB | fill s |",
            "|---|---|---|---|---|---|---|",
        ]
        for rows, x in results["row6"]["sizes"].items():
            m, r = x["metrics"], x["readyz"]
            out.append(
                f"| {int(rows):,} | {m['p50_ms']:.2f}/{m['p99_ms']:.2f}/{m['mean_ms']:.2f} "
                f"| {r['p50_ms']:.2f}/{r['p99_ms']:.2f}/{r['mean_ms']:.2f} "
                f"| {x['old_status_ms']:.1f} | {x['cli_status_seconds']:.2f} "
                f"| {x['db_bytes'] / 2**20:.0f} | {x['fill_seconds']:.1f} |"
            )
    if "row7" in results:
        out += [
            "",
            f"### Row 7: soak at {results['row7']['rate']:.0f} sign-ups/s "
            f"(half of {results['row7']['max_per_s']:.0f}/s)",
            "",
            "| minute | sign-ups/s | errors | RSS MiB | database files MiB | outbox rows "
            "| lag p50/p99 ms | delivered |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in results["row7"]["samples"]:
            out.append(
                f"| {x['minute']} | {x['signups_per_s']:.0f} | {x['errors']} | {x['rss_mib']:.0f} "
                f"| {x['db_files_mib']:.1f} | {x['outbox_rows']:,} "
                f"| {x['lag_p50_ms']:.1f}/{x['lag_p99_ms']:.1f} | {x['delivered']:,} |"
            )
    return out
