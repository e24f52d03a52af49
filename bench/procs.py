"""Child processes of the benchmark: start, wait for, measure (RSS) and stop them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: split after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    tree = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_of_tree(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB over the process and all its descendants."""
    rss = pss = 0
    for member in process_tree(pid):
        rss += _kib(f"/proc/{member}/status", "VmRSS:")
        pss += _kib(f"/proc/{member}/smaps_rollup", "Pss:")
    return rss, pss


def cpu_seconds_of_tree(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


@dataclass
class MemorySampler:
    """Samples a process tree's memory every `every` seconds while running."""

    pid: int
    every: float = 0.2
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    processes: int = 0
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def sample(self) -> None:
        self.processes = max(self.processes, len(process_tree(self.pid)))
        rss, pss = memory_of_tree(self.pid)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.every)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()


@dataclass
class Proc:
    """A child process in its own session, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status < 500:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready at {url}:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process (uvicorn's parent passes it to its workers), then kill."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        members = process_tree(process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # any straggler of this process's own tree (never anything else)
        for member in members[1:]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getsid(member) == process.pid:  # still ours, not a reused pid
                    os.kill(member, signal.SIGKILL)
