"""A local stand-in for the Pwned Passwords range API, over real HTTP (aiohttp).

It answers `GET /range/{5 hex}` as the API documents: `text/plain`, one
`SUFFIX:COUNT` line per hash under that prefix (35 upper-case hex digits, CRLF line
ends), and with `Add-Padding: true` padded with random suffixes of count 0 to between
800 and 1,000 lines. Besides the breached passwords it is given, every range holds a
few hundred made-up entries, as a real range does.

For tests: `slow_seconds` delays each answer, `down` answers 503, `log` lists every
request (its path and headers) and `log_file` writes them, one line each, so a test can
search everything that reached it.

`python -m signup.testing.pwned_standin --port 9200 --breached 'password1=1000'` runs it
in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from aiohttp import web

_PREFIX = re.compile(r"[0-9A-Fa-f]{5}\Z")


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


@dataclass
class PwnedStandin:
    # Full upper-case SHA-1 hex -> times seen.
    breached: dict[str, int] = field(default_factory=dict)
    fillers_per_range: int = 300
    slow_seconds: float = 0.0
    down: bool = False
    seed: int = 0
    log: list[str] = field(default_factory=list)
    log_file: Path | None = None
    url: str = ""

    @classmethod
    def with_passwords(cls, passwords: dict[str, int], **kwargs: object) -> PwnedStandin:
        return cls(breached={sha1_hex(p): n for p, n in passwords.items()}, **kwargs)  # type: ignore[arg-type]

    def requests_for(self, prefix: str) -> int:
        return sum(1 for line in self.log if line.startswith(f"GET /range/{prefix} "))

    def _record(self, request: web.Request) -> None:
        headers = " ".join(f"{k}={v}" for k, v in sorted(request.headers.items()))
        line = f"{request.method} {request.path_qs} {headers}"
        self.log.append(line)
        if self.log_file is not None:
            with self.log_file.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    def range_lines(self, prefix: str, padded: bool) -> list[str]:
        prefix = prefix.upper()
        # The same made-up entries for a prefix every time (the real ranges change slowly).
        rng = random.Random(f"{self.seed}:{prefix}")
        entries = {
            "".join(rng.choices("0123456789ABCDEF", k=35)): rng.randint(1, 5000)
            for _ in range(self.fillers_per_range)
        }
        for digest, count in self.breached.items():
            if digest.startswith(prefix):
                entries[digest[5:]] = count
        lines = [f"{suffix}:{count}" for suffix, count in entries.items()]
        if padded:
            pad = random.Random()  # a new amount of padding each time, as the real API
            target = max(len(lines), pad.randint(800, 1000))
            while len(lines) < target:
                lines.append("".join(pad.choices("0123456789ABCDEF", k=35)) + ":0")
        random.Random().shuffle(lines)
        return lines

    async def _range(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.slow_seconds:
            await asyncio.sleep(self.slow_seconds)
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        prefix = request.match_info["prefix"]
        if not _PREFIX.match(prefix):
            return web.Response(
                status=400,
                text="The hash prefix was not in a valid format",
                content_type="text/plain",
            )
        padded = request.headers.get("Add-Padding", "").lower() == "true"
        body = "\r\n".join(self.range_lines(prefix, padded))
        return web.Response(text=body, content_type="text/plain")

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/range/{prefix}", self._range)
        return app


@asynccontextmanager
async def running_pwned_standin(
    *, host: str = "127.0.0.1", port: int = 0, standin: PwnedStandin | None = None
) -> AsyncIterator[PwnedStandin]:
    """Serve a stand-in on `host:port` (0: a free port) for the block; `.url` says where."""
    standin = standin or PwnedStandin()
    runner = web.AppRunner(standin.make_app(), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound_host, bound_port = cast("tuple[str, int]", tuple(runner.addresses[0][:2]))
        standin.url = f"http://{bound_host}:{bound_port}"
        yield standin
    finally:
        await runner.cleanup()


def _passwords(specs: Iterable[str]) -> dict[str, int]:
    passwords: dict[str, int] = {}
    for spec in specs:
        password, _, count = spec.rpartition("=")
        passwords[password] = int(count)
    return passwords


async def _serve(args: argparse.Namespace) -> None:
    standin = PwnedStandin.with_passwords(
        _passwords(args.breached),
        slow_seconds=args.slow_seconds,
        down=args.down,
        log_file=Path(args.log_file) if args.log_file else None,
    )
    async with running_pwned_standin(host=args.host, port=args.port, standin=standin) as s:
        print(f"pwned stand-in: {s.url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m signup.testing.pwned_standin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument(
        "--breached", action="append", default=[], help="PASSWORD=COUNT (repeatable)"
    )
    parser.add_argument("--slow-seconds", type=float, default=0.0)
    parser.add_argument("--down", action="store_true", help="answer every request 503")
    parser.add_argument("--log-file", default="", help="append each request's line here")
    args = parser.parse_args(argv)
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
