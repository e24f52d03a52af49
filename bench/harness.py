"""The benchmark's orchestration: processes, runs, checks, the table and results.md."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.procs import PYTHON, MemorySampler, Proc, free_port, process_tree

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
LUA = HERE / "signup.lua"
BIN = Path(sys.executable).parent
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
STANDIN_LATENCY = 0.05
STANDIN = {
    "domain": "standin.auth0.local",
    "client_id": "standin-client",
    "client_secret": "standin-secret",
}
console = Console(width=None if sys.stdout.isatty() else 132)


@dataclass
class Options:
    runs: int = 3
    duration: float = 10.0
    local_duration: float = 6.0
    workers: int = 1
    connections: int = 128
    relay_events: int = 20_000
    rows: set[int] = field(default_factory=lambda: {1, 3, 4})
    out: str = "bench/results.md"
    keep: bool = False
    src: str | None = None  # another source tree of `signup` to measure (before/after)
    soak_minutes: int = 10
    # A form definition for the service; the load then sends docs/form.example.toml's
    # fields and consents (signup.lua's "form" mode).
    form_file: str | None = None


def median(values: list[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


# ---------------------------------------------------------------------------------------
# CPU accounting: how much of the machine the benchmark had (others share it)
# ---------------------------------------------------------------------------------------


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return user + nice + system + irq + softirq + steal


def _tree_jiffies(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total


def _broker_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == "beam.smp":
                    found.append(int(entry))
    return found


@dataclass
class CpuWatch:
    """Cores used, over a span, by the benchmark's own processes, the broker, and others;
    with `server`, also the CPU seconds of that process tree alone (the server under load)."""

    server: int | None = None
    started: float = 0.0
    busy: int = 0
    ours: int = 0
    broker: int = 0
    served: int = 0

    def _broker(self) -> int:
        return sum(_tree_jiffies(p) for p in _broker_pids())

    def start(self) -> CpuWatch:
        self.started = time.monotonic()
        self.busy, self.ours, self.broker = (
            _busy_jiffies(),
            _tree_jiffies(os.getpid()),
            self._broker(),
        )
        self.served = _tree_jiffies(self.server) if self.server else 0
        return self

    def stop(self) -> dict[str, float]:
        span = max(time.monotonic() - self.started, 1e-6)
        hz = os.sysconf("SC_CLK_TCK")
        busy = (_busy_jiffies() - self.busy) / hz / span
        ours = (_tree_jiffies(os.getpid()) - self.ours) / hz / span
        broker = (self._broker() - self.broker) / hz / span
        served = (_tree_jiffies(self.server) - self.served) / hz if self.server else 0.0
        return {
            "busy": busy,
            "bench": ours,
            "broker": broker,
            "others": max(0.0, busy - ours - broker),
            "server_seconds": served,
        }


# ---------------------------------------------------------------------------------------
# Load generators
# ---------------------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """wrk's path; installs Debian's package when missing and we may (root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        console.print("[yellow]wrk is missing: apt-get install -y wrk[/yellow]")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, **quiet).returncode:
            subprocess.run(["apt-get", "update"], env=env, **quiet)
            subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, **quiet)
        found = shutil.which("wrk")
    if not found:
        console.print(
            "[yellow]wrk unavailable: the closed-loop Python generator replaces it[/yellow]"
        )
    return found


async def _run_json(
    argv: list[str], marker: str = "", env: dict[str, str] | None = None
) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await process.communicate()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(marker) and line[len(marker) :].lstrip().startswith("{"):
            result: dict[str, Any] = orjson.loads(line[len(marker) :])
            return result
    raise RuntimeError(f"{argv[0]} gave no result ({process.returncode}):\n{err.decode()[-2000:]}")


@dataclass
class LoadResult:
    """One closed-loop (max) or open-loop (rate) run, as the table needs it."""

    ok: int  # 201s
    seconds: float
    statuses: dict[str, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float
    raw: dict[str, Any]

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + sum(n for s, n in self.statuses.items() if s != "201")

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("5"))


async def closed_load(
    wrk: str | None,
    url: str,
    prefix: str,
    seconds: float,
    connections: int,
    *,
    minimal: bool = False,
    solutions: Path | None = None,
    form: bool = False,
) -> LoadResult:
    """`solutions`: a file of proof-of-work solutions, one a line, each sent once."""
    if wrk is None:
        if solutions is not None or form:
            raise RuntimeError("proof-of-work and form runs need wrk")
        raw = await _run_json(
            [PYTHON, "-m", "bench.loadgen", url, "--closed", str(connections)]
            + ["--duration", str(seconds), "--prefix", prefix]
            + (["--minimal"] if minimal else [])
        )
        return _from_loadgen(raw)
    threads = min(2, connections)
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"]
    mode = "minimal" if minimal else "form" if form else "full"
    argv += ["--latency", "-s", str(LUA), url, "--", prefix, mode]
    argv += [str(solutions), str(threads)] if solutions is not None else []
    raw = await _run_json(argv, marker="WRK_JSON ")
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    errors = raw["errors"]
    return LoadResult(
        ok=statuses.get("201", 0),
        seconds=raw["duration_us"] / 1e6,
        statuses=statuses,
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        p50_ms=raw["latency_us"]["p50"] / 1000,
        p99_ms=raw["latency_us"]["p99"] / 1000,
        raw=raw,
    )


def _from_loadgen(raw: dict[str, Any]) -> LoadResult:
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    return LoadResult(
        ok=statuses.get("201", 0),
        seconds=float(raw["elapsed_seconds"]),
        statuses=statuses,
        socket_errors=sum(raw["errors"].values()),
        p50_ms=raw["latency_ms"]["p50"],
        p99_ms=raw["latency_ms"]["p99"],
        raw=raw,
    )


async def rate_load(
    url: str, prefix: str, rate: float, seconds: float, *, form: bool = False
) -> LoadResult:
    raw = await _run_json(
        [
            *(PYTHON, "-m", "bench.loadgen", url, "--rate", f"{rate:.1f}"),
            *("--duration", str(seconds), "--prefix", prefix),
            *(["--form"] if form else []),
        ]
    )
    result = _from_loadgen(raw)
    result.seconds = float(raw["send_seconds"])  # the offered span; the rate is fixed
    return result


# ---------------------------------------------------------------------------------------
# The event consumer and the service's own database: were all events delivered?
# ---------------------------------------------------------------------------------------


class Consumer:
    def __init__(self, exchange: str, queue: str, log: Path) -> None:
        self.exchange, self.queue, self.log = exchange, queue, log
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.process = await asyncio.create_subprocess_exec(
                PYTHON,
                "-m",
                "bench.consumer",
                AMQP,
                self.exchange,
                self.queue,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        ready = await self._line(timeout=30)
        if not ready.get("ready"):
            raise RuntimeError(f"consumer not ready: {ready}")

    async def _line(self, timeout: float = 10) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the consumer exited:\n" + self.log.read_text()[-2000:])
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def ask(self, command: str, prefix: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        async with self._lock:
            self.process.stdin.write(f"{command} {prefix}\n".encode())
            await self.process.stdin.drain()
            return await self._line()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.write(b"quit\n")
            await self.process.stdin.drain()
            await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def _db_state(db: Path, prefix: str) -> dict[str, Any]:
    pattern = f"{prefix}-%"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM signups WHERE email LIKE ? GROUP BY status",
                (pattern,),
            ).fetchall()
        )
        ids = sorted(
            row[0]
            for row in conn.execute(
                "SELECT event_id FROM signups WHERE status = 'created' AND email LIKE ?",
                (pattern,),
            )
        )
        unpublished = conn.execute(
            "SELECT count(*) FROM outbox o JOIN signups s ON s.event_id = o.event_id "
            "WHERE s.email LIKE ? AND o.published_at IS NULL",
            (pattern,),
        ).fetchone()[0]
    return {
        "statuses": statuses,
        "created": len(ids),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "unpublished": unpublished,
    }


async def delivery_check(consumer: Consumer, db: Path, prefix: str) -> dict[str, Any]:
    """Once the run's requests have all finished: each created sign-up's event arrived?"""
    deadline = time.monotonic() + 60
    previous: dict[str, Any] | None = None
    while True:  # the sign-ups still in flight when wrk stopped finish (or fail) first
        state = await asyncio.to_thread(_db_state, db, prefix)
        settled = not state["statuses"].get("pending")
        if settled and previous is not None and previous["created"] == state["created"]:
            break
        previous = state
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    while time.monotonic() < deadline:
        seen = await consumer.ask("stats", prefix)
        if seen["distinct"] >= state["created"] and not state["unpublished"]:
            break
        await asyncio.sleep(0.2)
        state = await asyncio.to_thread(_db_state, db, prefix)
    report = await consumer.ask("report", prefix)
    return {
        "db": state,
        "consumer": report,
        "delivered": report["distinct"],
        "duplicates": report["messages"] - report["distinct"],
        "all_delivered": report["ids_sha256"] == state["ids_sha256"]
        and report["distinct"] == state["created"]
        and state["unpublished"] == 0,
        "lag_p50_ms": report["lag_ms"]["p50"],
        "lag_p99_ms": report["lag_ms"]["p99"],
    }


# ---------------------------------------------------------------------------------------
# The session: processes and progress
# ---------------------------------------------------------------------------------------


class Session:
    def __init__(self, options: Options, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.tmp = Path(tempfile.mkdtemp(prefix="signup-bench-"))
        tag = uuid.uuid4().hex[:10]
        self.exchange = f"bench.users.{tag}"
        self.queue = f"bench.lag.{tag}"
        self.relay_exchange = f"bench.relay.{tag}"
        self.relay_queue = f"bench.relay-q.{tag}"
        self.procs: list[Proc] = []
        self.consumer = Consumer(self.exchange, self.queue, self.tmp / "consumer.log")
        self.overall = progress.add_task("benchmark", total=None)
        self.step = progress.add_task("", total=None, visible=False)
        self.wrk = ensure_wrk()
        self.standin_url = ""

    # -- progress ------------------------------------------------------------------------

    async def timed(self, label: str, seconds: float, work: Awaitable[T]) -> T:
        """Run `work` while a bar counts `seconds` down (a guess for untimed steps)."""
        self.progress.update(self.overall, description=label)
        self.progress.reset(self.step, total=seconds, visible=True, description="")
        task = asyncio.ensure_future(work)
        started = time.monotonic()
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            self.progress.update(self.step, completed=min(seconds, time.monotonic() - started))
        self.progress.update(self.step, visible=False)
        return task.result()

    def advance(self) -> None:
        self.progress.advance(self.overall)

    # -- processes -----------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SIGNUP_", "BENCH_")) and k != "PYTHONPATH"
        }
        # `bench` importable from the temp folder; --src puts another `signup` first
        paths = [self.options.src] if self.options.src else []
        base["PYTHONPATH"] = os.pathsep.join([*paths, str(HERE.parent)])
        return base | extra

    async def start(self, name: str, argv: list[str], env: dict[str, str], health: str) -> Proc:
        proc = Proc(name, argv, env, self.tmp / f"{name}.log", cwd=self.tmp)
        self.procs.append(proc)
        await proc.start()
        await proc.wait_http(health, timeout=90)
        return proc

    async def stop(self, proc: Proc) -> None:
        await proc.stop()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)

    async def start_standin(self) -> None:
        port = free_port()
        argv = [PYTHON, "-m", "signup.testing.auth0_standin", "--port", str(port)]
        argv += ["--latency", str(STANDIN_LATENCY)]
        self.standin_url = f"http://127.0.0.1:{port}"
        proc = Proc("standin", argv, self.env(), self.tmp / "standin.log", cwd=self.tmp)
        self.procs.append(proc)
        await proc.start()
        await proc.wait_http(f"{self.standin_url}/__standin/state", timeout=60)

    def service_env(self, db: Path, provider: str) -> dict[str, str]:
        env = self.env(
            SIGNUP_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
            SIGNUP_AMQP_URL=AMQP,
            SIGNUP_EXCHANGE=self.exchange,
            SIGNUP_IDENTITY_PROVIDER=provider,
            SIGNUP_RATE_LIMIT_PER_IP="",
            SIGNUP_RATE_LIMIT_PER_EMAIL="",
            SIGNUP_WEB_CONCURRENCY=str(self.options.workers),
            # Its operations port too: never the default 9100 a running service may hold.
            SIGNUP_OPS_PORT=str(free_port()),
        )
        if self.options.form_file:
            env["SIGNUP_FORM_FILE"] = self.options.form_file
        if provider == "auth0":
            env |= {
                "SIGNUP_AUTH0_DOMAIN": STANDIN["domain"],
                "SIGNUP_AUTH0_CLIENT_ID": STANDIN["client_id"],
                "SIGNUP_AUTH0_CLIENT_SECRET": STANDIN["client_secret"],
                "SIGNUP_AUTH0_BASE_URL": self.standin_url,
            }
        return env

    async def start_service(self, name: str, db: Path, provider: str) -> tuple[Proc, str]:
        port = free_port()
        proc = await self.start(
            name,
            [str(BIN / "signup"), "serve", "--port", str(port)],
            self.service_env(db, provider),
            f"http://127.0.0.1:{port}/healthz",
        )
        return proc, f"http://127.0.0.1:{port}"

    async def start_service_env(self, name: str, env: dict[str, str]) -> tuple[Proc, str]:
        """`signup serve` with an environment of the caller's (bench/hooks.py)."""
        port = free_port()
        proc = await self.start(
            name,
            [str(BIN / "signup"), "serve", "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/healthz",
        )
        return proc, f"http://127.0.0.1:{port}"

    async def start_app(self, name: str, factory: str, **env: str) -> tuple[Proc, str]:
        port = free_port()
        argv = [PYTHON, "-m", "bench.serve_app", factory, "--port", str(port)]
        argv += ["--workers", str(self.options.workers)]
        proc = await self.start(name, argv, self.env(**env), f"http://127.0.0.1:{port}/healthz")
        return proc, f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for proc in reversed(self.procs):
            await proc.stop()
        self.procs.clear()
        await self.consumer.stop()
        if not self.options.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------


async def row1(s: Session) -> dict[str, Any]:
    o = s.options
    await s.timed("starting the Auth0 stand-in and the ceilings", 8, s.start_standin())
    ceiling_env = {
        "BENCH_AUTH0_URL": s.standin_url,
        "BENCH_AUTH0_CLIENT_ID": STANDIN["client_id"],
        "BENCH_AUTH0_CLIENT_SECRET": STANDIN["client_secret"],
        "BENCH_AUTH0_AUDIENCE": f"https://{STANDIN['domain']}/api/v2/",
    }
    bare, bare_url = await s.timed(
        "starting ceiling (a)", 6, s.start_app("bare", "bench.ceilings:bare_app")
    )
    passthrough, pass_url = await s.timed(
        "starting ceiling (b)",
        6,
        s.start_app("passthrough", "bench.ceilings:passthrough_app", **ceiling_env),
    )
    runs: list[dict[str, Any]] = []
    for n in range(o.runs):
        run: dict[str, Any] = {}
        db = s.tmp / f"auth0-{n}.db"
        service, url = await s.timed(
            f"run {n + 1}/{o.runs}: starting signup serve (auth0)",
            6,
            s.start_service(f"signup-auth0-{n}", db, "auth0"),
        )
        memory = MemorySampler(service.pid)
        memory.start()
        signup_url = f"{url}/user/signup"
        await s.timed(
            f"run {n + 1}: warming up",
            2,
            closed_load(s.wrk, signup_url, f"w{n}", 2, 64, form=bool(o.form_file)),
        )
        await delivery_check(s.consumer, db, f"w{n}")

        cpu = CpuWatch(service.pid).start()
        top = await s.timed(
            f"run {n + 1}: row 1 at the maximum ({o.connections} connections)",
            o.duration,
            closed_load(
                s.wrk, signup_url, f"m{n}", o.duration, o.connections, form=bool(o.form_file)
            ),
        )
        run["cpu_max"] = cpu.stop()
        run["max"] = top
        run["max_delivery"] = await s.timed(
            f"run {n + 1}: checking every event arrived", 2, delivery_check(s.consumer, db, f"m{n}")
        )
        s.advance()

        rate = max(1.0, top.per_s / 2)
        cpu = CpuWatch(service.pid).start()
        half = await s.timed(
            f"run {n + 1}: row 1 at half the maximum ({rate:.0f}/s, constant rate)",
            o.duration,
            rate_load(signup_url, f"h{n}", rate, o.duration, form=bool(o.form_file)),
        )
        run["cpu_half"] = cpu.stop()
        run["half"] = half
        run["half_rate"] = rate
        run["half_delivery"] = await s.timed(
            f"run {n + 1}: checking every event arrived", 2, delivery_check(s.consumer, db, f"h{n}")
        )
        await memory.stop()
        run["peak_rss_kib"] = memory.peak_rss_kib
        run["peak_pss_kib"] = memory.peak_pss_kib
        run["processes"] = memory.processes
        await s.timed(f"run {n + 1}: stopping the service", 3, s.stop(service))
        s.advance()

        for key, target, app in (("bare", bare_url, bare), ("passthrough", pass_url, passthrough)):
            await closed_load(s.wrk, f"{target}/user/signup", f"c{key[0]}w{n}", 1, 64)
            cpu = CpuWatch(app.pid).start()
            run[key] = await s.timed(
                f"run {n + 1}: ceiling {'(a) bare' if key == 'bare' else '(b) pass-through'}",
                o.duration,
                closed_load(
                    s.wrk, f"{target}/user/signup", f"c{key[0]}{n}", o.duration, o.connections
                ),
            )
            run[f"cpu_{key}"] = cpu.stop()
            s.advance()
        # The half-load bar's reference: the same generator at the same rate against the
        # pass-through, which shows what the machine, the generator and the stand-in
        # alone add to a request's latency at that rate.
        cpu = CpuWatch(passthrough.pid).start()
        run["passthrough_half"] = await s.timed(
            f"run {n + 1}: ceiling (b) at the half-load rate ({rate:.0f}/s, constant rate)",
            o.duration,
            rate_load(f"{pass_url}/user/signup", f"ch{n}", rate, o.duration),
        )
        run["cpu_passthrough_half"] = cpu.stop()
        runs.append(run)
    await s.stop(bare)
    await s.stop(passthrough)
    return {"runs": runs}


async def row3(s: Session) -> dict[str, Any]:
    o = s.options
    guess = 15 + o.runs * 2 * o.relay_events / 5000
    result = await s.timed(
        f"row 3: relay vs raw aio-pika, {o.relay_events} events x {o.runs} runs",
        guess,
        _run_json(
            [
                *(PYTHON, "-m", "bench.relay_bench", "--amqp", AMQP),
                *("--exchange", s.relay_exchange, "--queue", s.relay_queue, "--dir", str(s.tmp)),
                *("--events", str(o.relay_events), "--runs", str(o.runs)),
            ],
            env=s.env(),
        ),
    )
    s.advance()
    return result


async def row4(s: Session) -> dict[str, Any]:
    o = s.options
    runs: list[dict[str, Any]] = []
    fapiu_db = s.tmp / "fastapi_users.db"
    for n in range(o.runs):
        run: dict[str, Any] = {}
        service, url = await s.timed(
            f"row 4 run {n + 1}/{o.runs}: starting signup serve (local)",
            6,
            s.start_service(f"signup-local-{n}", s.tmp / f"local-{n}.db", "local"),
        )
        await closed_load(s.wrk, f"{url}/user/signup", f"lw{n}", 1, 16, minimal=True)
        run["signup"] = await s.timed(
            f"row 4 run {n + 1}: signup local mode, 16 clients",
            o.local_duration,
            closed_load(s.wrk, f"{url}/user/signup", f"l{n}", o.local_duration, 16, minimal=True),
        )
        await s.stop(service)
        app, app_url = await s.timed(
            f"row 4 run {n + 1}: starting fastapi-users",
            5,
            s.start_app(
                f"fastapi-users-{n}",
                "bench.fastapi_users_app:create_app",
                BENCH_FAPIU_DB=str(fapiu_db),
            ),
        )
        await closed_load(s.wrk, f"{app_url}/auth/register", f"fw{n}", 1, 16, minimal=True)
        run["fastapi_users"] = await s.timed(
            f"row 4 run {n + 1}: fastapi-users register, 16 clients",
            o.local_duration,
            closed_load(
                s.wrk, f"{app_url}/auth/register", f"f{n}", o.local_duration, 16, minimal=True
            ),
        )
        await s.stop(app)
        runs.append(run)
        s.advance()
    return {"runs": runs}


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 0) -> str:
    if value != value:
        return "–"
    return f"{value:,.{digits}f}"


@dataclass
class Line:
    row: str
    measure: str
    figure: str
    bar: str = ""
    met: bool | None = None


def _cpu_us(run: dict[str, Any], key: str) -> float:
    """The server's CPU during `key`'s load, µs a successful request."""
    watch = run.get(f"cpu_{key}")
    ok: int = run[key].ok
    if not watch or not ok:
        return float("nan")
    return float(watch["server_seconds"]) / ok * 1e6


def summarise(o: Options, results: dict[str, Any]) -> list[Line]:
    lines: list[Line] = []
    if "row1" in results:
        runs = results["row1"]["runs"]
        bare = median([r["bare"].per_s for r in runs])
        passthrough = median([r["passthrough"].per_s for r in runs])
        ratio_a = median([r["max"].per_s / r["bare"].per_s for r in runs])
        ratio_b = median([r["max"].per_s / r["passthrough"].per_s for r in runs])
        errors = sum(r["max"].errors + r["half"].errors for r in runs)
        delivered = all(
            r["max_delivery"]["all_delivered"] and r["half_delivery"]["all_delivered"] for r in runs
        )
        created = sum(
            r["max_delivery"]["db"]["created"] + r["half_delivery"]["db"]["created"] for r in runs
        )
        got = sum(r["max_delivery"]["delivered"] + r["half_delivery"]["delivered"] for r in runs)
        oks = sum(r["max"].ok + r["half"].ok for r in runs)
        latency = STANDIN_LATENCY * 1000
        for label, key, rate_note in (
            ("at max", "max", f"{o.connections} connections, closed loop"),
            ("at 50%", "half", "constant rate, open loop"),
        ):
            p50 = median([r[key].p50_ms for r in runs])
            p99 = median([r[key].p99_ms for r in runs])
            lag50 = median([r[f"{key}_delivery"]["lag_p50_ms"] for r in runs])
            lag99 = median([r[f"{key}_delivery"]["lag_p99_ms"] for r in runs])
            per_s = median([r[key].per_s for r in runs])
            lines.append(
                Line(
                    f"1 {label}",
                    f"sign-ups/s ({rate_note})",
                    _fmt(per_s),
                    "≥ 1,300" if key == "max" else "",
                    per_s >= 1300 if key == "max" else None,
                )
            )
            lines.append(
                Line(f"1 {label}", "latency p50 / p99 (ms)", f"{_fmt(p50, 1)} / {_fmt(p99, 1)}")
            )
            lines.append(
                Line(
                    f"1 {label}",
                    "added latency p50 / p99 (ms, minus the stand-in's 50)",
                    f"{_fmt(p50 - latency, 1)} / {_fmt(p99 - latency, 1)}",
                    "p99 ≤ 25" if key == "half" else "",
                    (p99 - latency) <= 25 if key == "half" else None,
                )
            )
            lines.append(
                Line(
                    f"1 {label}",
                    "event lag p50 / p99 (ms, event time → arrival)",
                    f"{_fmt(lag50, 1)} / {_fmt(lag99, 1)}",
                    "p99 ≤ 50",
                    lag99 <= 50,
                )
            )
        lines.append(
            Line(
                "1",
                "errors (non-201 + socket) / 201s / created / events delivered",
                f"{errors} / {oks:,} / {created:,} / {got:,}",
                "0 errors, all delivered",
                errors == 0 and delivered,
            )
        )
        lines.append(Line("2a", "ceiling: bare FastAPI endpoint, req/s", _fmt(bare)))
        lines.append(Line("2a", "row 1 / (a)", _fmt(ratio_a, 2)))
        lines.append(
            Line("2b", "ceiling: validate + forward to stand-in, req/s", _fmt(passthrough))
        )
        lines.append(Line("2b", "row 1 / (b)", _fmt(ratio_b, 2), "≥ 0.85", ratio_b >= 0.85))
        lines.append(
            Line(
                "1",
                "service's CPU a sign-up, at max / at 50% (µs, its process tree)",
                " / ".join(_fmt(median([_cpu_us(r, k) for r in runs])) for k in ("max", "half")),
            )
        )
        lines.append(
            Line(
                "2b",
                "pass-through's CPU a request, at max / at row 1's 50% rate (µs)",
                " / ".join(
                    _fmt(median([_cpu_us(r, k) for r in runs]))
                    for k in ("passthrough", "passthrough_half")
                ),
            )
        )
        pass_p50 = median([r["passthrough_half"].p50_ms for r in runs])
        pass_p99 = median([r["passthrough_half"].p99_ms for r in runs])
        lines.append(
            Line(
                "2b at 50%",
                "pass-through at row 1's half-load rate: added latency p50 / p99 (ms)",
                f"{_fmt(pass_p50 - latency, 1)} / {_fmt(pass_p99 - latency, 1)}",
            )
        )
        rss = max(r["peak_rss_kib"] for r in runs) / 1024
        procs = max(r["processes"] for r in runs)
        pss = max(r["peak_pss_kib"] for r in runs) / 1024
        lines.append(
            Line(
                "5",
                f"peak RSS of the service, all {procs} processes (MB; PSS)",
                f"{_fmt(rss)} ({_fmt(pss)})",
                "≤ 200",
                rss <= 200,
            )
        )
    if "row3" in results:
        runs = results["row3"]["runs"]
        relay = median([r["relay"]["per_s"] for r in runs])
        raw = median([r["raw"]["per_s"] for r in runs])
        ratio = median([r["relay"]["per_s"] / r["raw"]["per_s"] for r in runs])
        ok = all(
            r["relay"]["pending"] == 0
            and r["relay"]["queued"] == r["relay"]["events"]
            and r["raw"]["failed"] == 0
            for r in runs
        )
        lines.append(Line("3", "relay alone, events/s (outbox → broker, confirmed)", _fmt(relay)))
        lines.append(Line("3", "raw aio-pika, events/s (same messages, same in flight)", _fmt(raw)))
        lines.append(
            Line(
                "3",
                "relay / raw" + ("" if ok else " (NOT all published!)"),
                _fmt(ratio, 2),
                "≥ 0.8",
                ratio >= 0.8 and ok,
            )
        )
    if "row4" in results:
        runs = results["row4"]["runs"]
        ours = median([r["signup"].per_s for r in runs])
        theirs = median([r["fastapi_users"].per_s for r in runs])
        ours_5xx = sum(r["signup"].server_errors + r["signup"].socket_errors for r in runs)
        theirs_5xx = sum(
            r["fastapi_users"].server_errors + r["fastapi_users"].socket_errors for r in runs
        )
        ratio = median([r["signup"].per_s / r["fastapi_users"].per_s for r in runs])
        lines.append(
            Line(
                "4",
                "local mode (Argon2id 19 MiB, t=2): registrations/s; 5xx",
                f"{_fmt(ours, 1)}; {ours_5xx}",
                "0 5xx",
                ours_5xx == 0,
            )
        )
        lines.append(
            Line(
                "4",
                "fastapi-users register (same Argon2): registrations/s; 5xx",
                f"{_fmt(theirs, 1)}; {theirs_5xx}",
            )
        )
        lines.append(Line("4", "local mode / fastapi-users", _fmt(ratio, 2), "≥ 1.5", ratio >= 1.5))
    return lines


def render(lines: list[Line], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (
        ("row", "left"),
        ("measure", "left"),
        ("figure", "right"),
        ("bar", "left"),
        ("met", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for line in lines:
        met = "" if line.met is None else ("[green]yes[/green]" if line.met else "[red]no[/red]")
        table.add_row(line.row, line.measure, line.figure, line.bar, met)
    return table


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def machine(o: Options) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE.parent
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    ).stdout.strip()
    wrk = shutil.which("wrk")
    wrk_version = (
        subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        if wrk
        else "not installed (Python closed-loop generator used)"
    )
    packages = ", ".join(
        f"{p} {_version(p)}"
        for p in (
            "fastapi",
            "uvicorn",
            "uvloop",
            "httptools",
            "aiohttp",
            "aio-pika",
            "SQLAlchemy",
            "aiosqlite",
            "argon2-cffi",
            "fastapi-users",
            "pwdlib",
        )
    )
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem_kib / 1024 / 1024:.0f} GiB; "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {packages}",
        f"- load generator: {wrk_version}; RabbitMQ at {AMQP.split('@')[-1]}; "
        "everything shares the same cores",
        (
            f"- signup from {o.src} (--src)"
            if o.src
            else f"- signup at commit {commit}"
            + (" (src has uncommitted changes)" if dirty else "")
        ),
        f"- service: `signup serve`, SIGNUP_WEB_CONCURRENCY={o.workers}, SQLite (temp file), "
        "rate limits off, relay in-process",
    ]


def details(o: Options, results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "row1" in results:
        out += [
            "",
            "### Row 1, 2 and 5 runs",
            "",
            "| run | max/s | p50/p99 ms | lag p50/p99 | half rate | half p50/p99 | "
            "lag p50/p99 | bare/s | pass/s | pass at half rate p50/p99 | errors | "
            "created=delivered | peak RSS MB | CPU others (cores, max run) | "
            "CPU µs a request: service max/half, pass max/half |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        cpu_keys = ("max", "half", "passthrough", "passthrough_half")
        for n, r in enumerate(results["row1"]["runs"]):
            md, hd = r["max_delivery"], r["half_delivery"]
            out.append(
                f"| {n + 1} | {r['max'].per_s:.0f} | {r['max'].p50_ms:.1f}/{r['max'].p99_ms:.1f} "
                f"| {md['lag_p50_ms']:.1f}/{md['lag_p99_ms']:.1f} | {r['half_rate']:.0f} "
                f"| {r['half'].p50_ms:.1f}/{r['half'].p99_ms:.1f} "
                f"| {hd['lag_p50_ms']:.1f}/{hd['lag_p99_ms']:.1f} "
                f"| {r['bare'].per_s:.0f} | {r['passthrough'].per_s:.0f} "
                f"| {r['passthrough_half'].p50_ms:.1f}/{r['passthrough_half'].p99_ms:.1f} "
                f"| {r['max'].errors + r['half'].errors} "
                f"| {md['db']['created']}={md['delivered']}, "
                f"{hd['db']['created']}={hd['delivered']} "
                f"| {r['peak_rss_kib'] / 1024:.0f} | {r['cpu_max']['others']:.2f} "
                f"| {'/'.join(_fmt(_cpu_us(r, k)) for k in cpu_keys)} |"
            )
    if "row3" in results:
        out += [
            "",
            "### Row 3 runs",
            "",
            "| run | relay events/s | raw events/s | relay queued |",
            "|---|---|---|---|",
        ]
        for n, r in enumerate(results["row3"]["runs"]):
            out.append(
                f"| {n + 1} | {r['relay']['per_s']:.0f} | {r['raw']['per_s']:.0f} "
                f"| {r['relay']['queued']} |"
            )
    if "row4" in results:
        out += [
            "",
            "### Row 4 runs",
            "",
            "| run | signup local/s | statuses | fastapi-users/s | statuses |",
            "|---|---|---|---|---|",
        ]
        for n, r in enumerate(results["row4"]["runs"]):
            out.append(
                f"| {n + 1} | {r['signup'].per_s:.1f} | {r['signup'].statuses} "
                f"| {r['fastapi_users'].per_s:.1f} | {r['fastapi_users'].statuses} |"
            )
    from bench.outbox_scale import details as scale_details

    return out + scale_details(results)


def write_results(
    o: Options,
    lines: list[Line],
    results: dict[str, Any],
    spent: float,
    cpu: dict[str, float],
    load: tuple[float, float],
) -> Path:
    path = Path(o.out)
    if not path.is_absolute():
        path = HERE.parent / path
    md = [
        "# Benchmark results",
        "",
        f"`make bench` (= `python -m bench --runs {o.runs} --duration {o.duration:g} "
        f"--workers {o.workers} --connections {o.connections}`), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {spent / 60:.1f} min. Each figure is the "
        f"median of {o.runs} runs; each ceiling and each raw reference was measured in the "
        f"same run as the figure it bounds. Row-1 runs last {o.duration:g} s (the issue "
        "asks for 30 s; shortened to fit the time budget).",
        "",
        "## Machine",
        "",
        *machine(o),
        f"- while the benchmark ran, other processes on the machine used {cpu['others']:.2f} "
        f"cores on average (the broker {cpu['broker']:.2f}, the benchmark itself "
        f"{cpu['bench']:.2f}); load average {load[0]:.2f} at the start, {load[1]:.2f} at the end",
        "",
        "## Figures",
        "",
        "| row | measure | figure | bar | met |",
        "|---|---|---|---|---|",
    ]
    for line in lines:
        met = "" if line.met is None else ("yes" if line.met else "**no**")
        md.append(f"| {line.row} | {line.measure} | {line.figure} | {line.bar} | {met} |")
    md += details(o, results)
    md.append("")
    path.write_text("\n".join(md))
    return path


async def run(o: Options) -> int:
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    results: dict[str, Any] = {}
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    cpu = CpuWatch().start()
    with Progress(*columns, console=console, transient=True) as progress:
        session = Session(o, progress)
        steps = (4 * o.runs if 1 in o.rows else 0) + (1 if 3 in o.rows else 0)
        steps += o.runs if 4 in o.rows else 0
        steps += (2 if 6 in o.rows else 0) + (o.soak_minutes if 7 in o.rows else 0)
        progress.update(session.overall, total=steps)
        try:
            if 1 in o.rows or 4 in o.rows:
                await session.timed("starting the event consumer", 2, session.consumer.start())
            if 1 in o.rows:
                results["row1"] = await row1(session)
            if 3 in o.rows:
                results["row3"] = await row3(session)
            if 4 in o.rows:
                results["row4"] = await row4(session)
            if 6 in o.rows or 7 in o.rows:
                from bench import outbox_scale

                if 6 in o.rows:
                    results["row6"] = await outbox_scale.row6(session)
                if 7 in o.rows:
                    results["row7"] = await outbox_scale.row7(session, o.soak_minutes)
        finally:
            await session.close()
    spent = time.monotonic() - started
    usage = cpu.stop()
    from bench.outbox_scale import lines as scale_lines

    lines = summarise(o, results) + scale_lines(results)
    console.print(render(lines, f"signup benchmark (median of {o.runs}; {spent / 60:.1f} min)"))
    path = write_results(o, lines, results, spent, usage, (load_start, os.getloadavg()[0]))
    console.print(f"written to {path}")
    return 0
