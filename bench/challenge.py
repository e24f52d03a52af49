"""Row 1 with the proof of work on and off, interleaved: what checking a solution costs.

    python -m bench.challenge [--runs 2] [--duration 10] [--connections 128]

Each run starts a fresh `signup serve` (Auth0 mode against the stand-in, as row 1) with
`SIGNUP_CHALLENGE` off, then one with it on (`pow`, used solutions in the database), and
so on, `--runs` times each. For a run with it on, the load generator first fetches
challenges from `GET /signup/challenge` and solves them, all outside the measured window
(at the lowest difficulty, 1,000: the server's work does not depend on it), and wrk then
sends each solution once with its sign-up. Every answer must be a 201: a refused
solution is an error of the run. It prints sign-ups/s and latency of each run, the
medians, and on/off; `bench/README.md` keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
from rich.progress import Progress

from bench.harness import (
    BIN,
    CpuWatch,
    LoadResult,
    Options,
    Session,
    closed_load,
    console,
    delivery_check,
    free_port,
)
from signup.testing.pow import solve

KEY = "bench-challenge-key-" + "b" * 32
DIFFICULTY = 1_000
# Solutions made ready per second of a run: above the service's 201s a second at the
# maximum, so that wrk never runs out (one left over is simply never sent).
SOLUTIONS_PER_SECOND = 1_500


async def fetch_and_solve(url: str, count: int, path: Path) -> float:
    """Fetch `count` challenges, solve them, write the tokens to `path`; seconds spent."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        gate = asyncio.Semaphore(32)

        async def one() -> dict[str, Any]:
            async with gate, http.get(f"{url}/signup/challenge") as response:
                body: dict[str, Any] = await response.json()
                return body

        challenges = await asyncio.gather(*(one() for _ in range(count)))
    path.write_text("\n".join(solve(c) for c in challenges) + "\n")
    return time.monotonic() - started


async def one_run(s: Session, n: int, on: bool) -> dict[str, Any]:
    o = s.options
    label = "on" if on else "off"
    db = s.tmp / f"challenge-{label}-{n}.db"
    env = s.service_env(db, "auth0")
    if on:
        env |= {
            "SIGNUP_CHALLENGE": "pow",
            "SIGNUP_CHALLENGE_KEY": KEY,
            "SIGNUP_CHALLENGE_DIFFICULTY": str(DIFFICULTY),
        }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = await s.start(
        f"signup-{label}-{n}",
        [str(BIN / "signup"), "serve", "--port", str(port)],
        env,
        f"{url}/healthz",
    )
    warm = max_ = None
    prepared = 0.0
    if on:
        warm = s.tmp / f"warm-{n}.txt"
        max_ = s.tmp / f"max-{n}.txt"
        prepared += await fetch_and_solve(url, 3 * SOLUTIONS_PER_SECOND, warm)
        count = int(o.duration * SOLUTIONS_PER_SECOND)
        prepared += await fetch_and_solve(url, count, max_)
    await closed_load(s.wrk, f"{url}/user/signup", f"w{label}{n}", 2, 64, solutions=warm)
    await asyncio.sleep(1)  # the warm-up's sign-ups settle
    cpu = CpuWatch(service.pid).start()
    top: LoadResult = await closed_load(
        s.wrk, f"{url}/user/signup", f"m{label}{n}", o.duration, o.connections, solutions=max_
    )
    usage = cpu.stop()
    delivery = await delivery_check(s.consumer, db, f"m{label}{n}")
    await s.stop(service)
    return {
        "challenge": label,
        "per_s": top.per_s,
        "p50_ms": top.p50_ms,
        "p99_ms": top.p99_ms,
        # The service's own CPU a sign-up: what the check adds, whatever else the
        # machine was doing (throughput on a shared machine moves with its neighbours).
        "cpu_us": usage["server_seconds"] / top.ok * 1e6 if top.ok else float("nan"),
        "others_cores": usage["others"],
        "errors": top.errors,
        "statuses": top.statuses,
        "delivered": delivery["delivered"],
        "created": delivery["db"]["created"],
        "prepared_seconds": prepared,
    }


async def run(o: Options) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        s = Session(o, progress)
        try:
            await s.consumer.start()
            await s.start_standin()
            for n in range(o.runs):
                for on in (False, True):
                    result = await s.timed(
                        f"run {n + 1}/{o.runs}, challenge {'on' if on else 'off'}",
                        o.duration + (20 if on else 8),
                        one_run(s, n, on),
                    )
                    console.print(result)
                    results.append(result)
        finally:
            await s.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=128)
    args = parser.parse_args()
    o = Options(runs=args.runs, duration=args.duration, connections=args.connections)
    results = asyncio.run(run(o))
    medians = {}
    for label in ("off", "on"):
        mine = [r for r in results if r["challenge"] == label]
        medians[label] = {
            k: statistics.median(r[k] for r in mine)
            for k in ("per_s", "p50_ms", "p99_ms", "cpu_us", "others_cores")
        }
        per_run = ", ".join(f"{r['per_s']:.0f}" for r in mine)
        console.print(
            f"challenge {label}: {medians[label]['per_s']:.0f} sign-ups/s, p50 "
            f"{medians[label]['p50_ms']:.1f} ms, p99 {medians[label]['p99_ms']:.1f} ms, "
            f"service CPU {medians[label]['cpu_us']:.0f} µs a sign-up, other processes "
            f"{medians[label]['others_cores']:.2f} cores "
            f"(runs: {per_run}; errors "
            f"{sum(r['errors'] for r in mine)})"
        )
    console.print(
        f"on / off: sign-ups/s {medians['on']['per_s'] / medians['off']['per_s']:.3f}, "
        f"CPU a sign-up {medians['on']['cpu_us'] / medians['off']['cpu_us']:.3f}"
    )


if __name__ == "__main__":
    main()
