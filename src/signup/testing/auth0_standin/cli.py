"""`python -m signup.testing.auth0_standin`: the stand-in as a process of its own.

The benchmark (bench/harness.py) and docs/operations.md's Auth0 mode start it this way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Any

from .app import running_standin
from .bucket import RESET_MEANINGS
from .config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_CONNECTION,
    DEFAULT_DOMAIN,
    FAULT_SHARES,
    PASSWORD_POLICIES,
    StandinConfig,
    coerce_changes,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m signup.testing.auth0_standin",
        description="Run a local Auth0 stand-in (token + Management API users) in the foreground.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--latency", type=float, default=0.0, help="seconds per Management API call")
    p.add_argument("--token-latency", type=float, default=0.0)
    p.add_argument("--domain", default=DEFAULT_DOMAIN)
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    p.add_argument(
        "--connection",
        action="append",
        help=f"database connection name (repeatable; default {DEFAULT_CONNECTION})",
    )
    p.add_argument("--password-policy", choices=PASSWORD_POLICIES, default="low")
    p.add_argument("--dictionary", default="", help="comma-separated words refused as too common")
    p.add_argument("--no-personal-info", action="store_true")
    p.add_argument("--token-expires-in", type=int, default=86400)
    p.add_argument("--rate", type=float, default=None, help="bucket refill per second (off)")
    p.add_argument("--burst", type=int, default=10)
    p.add_argument(
        "--reset-means",
        choices=RESET_MEANINGS,
        default="full-bucket",
        help="what x-ratelimit-reset names: the bucket full again, or the next token",
    )
    p.add_argument("--seed", type=int, default=0)
    for share in FAULT_SHARES:
        p.add_argument("--" + share.replace("_", "-"), type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=1.0)
    p.add_argument("--hang-seconds", type=float, default=5.0)
    return p


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {
        "latency": args.latency,
        "token_latency": args.token_latency,
        "domain": args.domain,
        "client_id": args.client_id,
        "client_secret": args.client_secret,
        "connections": tuple(args.connection or [DEFAULT_CONNECTION]),
        "password_policy": args.password_policy,
        "password_dictionary": [w.strip() for w in args.dictionary.split(",") if w.strip()],
        "password_no_personal_info": args.no_personal_info,
        "token_expires_in": args.token_expires_in,
        "rate_per_second": args.rate,
        "burst": args.burst,
        "reset_means": args.reset_means,
        "seed": args.seed,
        "slow_seconds": args.slow_seconds,
        "hang_seconds": args.hang_seconds,
    }
    for share in FAULT_SHARES:
        config[share] = getattr(args, share)
    return config


async def _serve(host: str, port: int, config: dict[str, Any]) -> None:
    async with running_standin(host=host, port=port, **config) as standin:
        print(
            f"Auth0 stand-in on {standin.url} (domain {standin.domain}, "
            f"client id {standin.client_id}, audience {standin.audience})",
            flush=True,
        )
        await _keep_out_of_the_collector()


async def _keep_out_of_the_collector(every: float = 1.0) -> None:
    """As a process of its own, answer on time however many users it holds.

    A full collection walks every user it keeps (a benchmark makes many) and stops every
    call in flight meanwhile: stops Auth0 does not make, which would count as the
    service's own latency (docs/decisions/0016-benchmark-method.md, and 0009 for the
    service's side). Every second the young objects are collected and what survives is
    frozen out of the collector's sight (a few cycles that die later stay, which a
    stand-in can afford).
    """
    while True:
        await asyncio.sleep(every)
        gc.collect(1)
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config_from_args(args)
        StandinConfig(**coerce_changes(config))  # validate before binding
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coro = _serve(args.host, args.port, config)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
            asyncio.run(coro)
        else:
            uvloop.run(coro)
    except KeyboardInterrupt:
        pass
    return 0
