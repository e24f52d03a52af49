"""Power loss: no Auth0 call before its intent is on disk, no 201 before its completion is.

A power loss keeps what was synced and nothing else. If the intent's commit were still
only in the page cache when Auth0 created the account, a power loss would undo the
intent: the account would exist with no record of it here, so no event and nothing
for reconciliation to find. Likewise a 201 sent before the completion's commit was
synced could be followed by a restart that never publishes the event.

No power can be cut here, so the test proves the order instead: `signup serve` runs
under `strace -f`, which records, in the order they happened, every write to the WAL,
every fsync/fdatasync of it, and every write to a socket. For each sign-up it checks
that a WAL sync began after the last WAL write holding the sign-up's e-mail and ended
before the `POST /api/v2/users` carrying that e-mail began; and again between the
completion's WAL write and the first byte of the 201. With
`SIGNUP_SQLITE_SYNCHRONOUS=normal` the same check finds sign-ups that break the order:
the test can tell the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from faultkit import accounts_of, auth0_env, password_for, post_signup, wait_for

from signup.testing.auth0_standin import Auth0Standin, running_standin
from signup.testing.server import free_port

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

WAVES = 3
CLIENTS = 8  # concurrent sign-ups a wave: they share batches, and so syncs
TRACED = "pwrite64,pwritev,write,writev,sendto,sendmsg,fsync,fdatasync"


@dataclass
class Call:
    """One system call of the traced process: where its entry and its exit were seen."""

    pid: int
    name: str
    args: str
    start: int  # line of the entry in the trace
    end: int  # line of the exit (the same line unless another thread came between)
    result: str


# strace pads the pid column: "812  write(" as well as "16458 write(".
_DONE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (.*)$")
_UNFINISHED = re.compile(r"^(\d+) +(\w+)\((.*) <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>.*\) += (.*)$")


def parse_trace(text: str) -> list[Call]:
    """strace -f's lines as calls; a call split by another thread's is joined again."""
    calls: list[Call] = []
    open_calls: dict[int, Call] = {}
    for number, line in enumerate(text.splitlines()):
        if match := _DONE.match(line):
            pid, name, args, result = match.groups()
            calls.append(Call(int(pid), name, args, number, number, result))
        elif match := _UNFINISHED.match(line):
            pid, name, args = match.groups()
            open_calls[int(pid)] = Call(int(pid), name, args, number, -1, "")
        elif match := _RESUMED.match(line):
            pid, name, result = match.groups()
            call = open_calls.pop(int(pid), None)
            if call is not None and call.name == name:
                call.end, call.result = number, result
                calls.append(call)
    calls.sort(key=lambda c: c.start)
    return calls


def _socket(call: Call) -> str:
    """The `<TCP:[local->remote]>` the call wrote to ('' for files)."""
    match = re.match(r"\d+<(TCP:\[[^\]]+\])>", call.args)
    return match[1] if match else ""


def order_violations(
    calls: list[Call], wal: str, service_port: int, standin_port: int, emails: list[str]
) -> list[str]:
    """Every sign-up whose provider call or 201 was not preceded by a sync of its writes."""
    wal_tag = f"{wal}>"
    writes = [c for c in calls if c.name.startswith("pwrite") and wal_tag in c.args]
    syncs = [
        c
        for c in calls
        if c.name in ("fsync", "fdatasync") and wal_tag in c.args and c.result.startswith("0")
    ]
    to_standin = [c for c in calls if f"->127.0.0.1:{standin_port}]" in _socket(c)]
    to_clients = [c for c in calls if _socket(c).startswith(f"TCP:[127.0.0.1:{service_port}->")]

    def message_start(sent: list[Call], email: str, head: str) -> Call | None:
        """The first write of the message whose bytes carry `email` (head and body may
        be written apart: the message starts at the write with its first line)."""
        carrying = next((c for c in sent if email in c.args), None)
        if carrying is None:
            return None
        same = [c for c in sent if _socket(c) == _socket(carrying) and c.start <= carrying.start]
        return next((c for c in reversed(same) if head in c.args), None)

    def synced_between(after: Call, before: Call) -> bool:
        return any(after.end < s.start and s.end < before.start for s in syncs)

    problems = []
    for email in emails:
        call = message_start(to_standin, email, "POST /api/v2/users ")
        answer = message_start(to_clients, email, "HTTP/1.1 201 ")
        if call is None or answer is None:
            problems.append(
                f"{email}: provider call {call is not None}, 201 {answer is not None} in the trace"
            )
            continue
        intent = [w for w in writes if email in w.args and w.end < call.start]
        if not intent:
            problems.append(f"{email}: no WAL write of its intent before the provider call")
        elif not synced_between(intent[-1], call):
            problems.append(f"{email}: provider called before its intent's WAL write was synced")
        done = [
            w for w in writes if email in w.args and call.end < w.start and w.end < answer.start
        ]
        if not done:
            problems.append(f"{email}: no WAL write of its completion before the 201")
        elif not synced_between(done[-1], answer):
            problems.append(f"{email}: 201 sent before its completion's WAL write was synced")
    return problems


class TracedServe:
    """`signup serve` under `strace -f`; stopped (or killed) by its own pid."""

    def __init__(self, env: dict[str, str], folder: Path, strace: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.trace = folder / "serve.trace"
        self.log = folder / "serve.log"
        env = {**os.environ, **env, "SIGNUP_OPS_PORT": str(free_port())}
        # -yy names each descriptor's file or TCP pair; -s 4096 shows a whole WAL page.
        tracing = [strace, "-f", "-qq", "-y", "-yy", "-s", "4096", "--seccomp-bpf"]
        tracing += ["-e", "signal=none", "-e", f"trace={TRACED}", "-o", str(self.trace)]
        serving = [sys.executable, "-m", "signup", "serve", "--host", "127.0.0.1"]
        command = [*tracing, *serving, "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.strace = subprocess.Popen(command, env=env, stdout=log, stderr=log)

    def serve_pid(self) -> int | None:
        """The traced `signup serve` (strace's child): stopping strace would let it run on."""
        children = Path(f"/proc/{self.strace.pid}/task/{self.strace.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            return int(children.read_text().split()[0])
        return None

    async def healthy(self, http: aiohttp.ClientSession) -> bool:
        assert self.strace.poll() is None, f"strace/signup serve exited: {self.log.read_text()}"
        try:
            async with http.get(f"{self.url}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def stop(self) -> str:
        """SIGTERM to the service; strace ends with it. Returns the trace."""
        pid = self.serve_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        await asyncio.to_thread(self.strace.wait, 30)
        return self.trace.read_text(errors="replace")

    def kill(self) -> None:
        pid = self.serve_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.strace.poll() is None:
            self.strace.kill()
            self.strace.wait(10)


async def traced_signups(
    tmp_path: Path, standin: Auth0Standin, exchange: str, synchronous: str
) -> tuple[list[str], str, int]:
    """Waves of concurrent sign-ups against a traced service: (e-mails, trace, its port)."""
    strace = shutil.which("strace")
    assert strace, "strace is not installed (.ci/run installs it: apt-get install strace)"
    folder = tmp_path / synchronous
    folder.mkdir()
    db = folder / "signup.db"
    env = auth0_env(
        f"sqlite+aiosqlite:///{db}", exchange, standin, SIGNUP_SQLITE_SYNCHRONOUS=synchronous
    )
    serve = TracedServe(env, folder, strace)
    emails = [f"power-{synchronous}-{i}@loss.example" for i in range(WAVES * CLIENTS)]
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: serve.healthy(http), 60, "signup serve under strace healthy")
            for wave in range(WAVES):
                batch = emails[wave * CLIENTS : (wave + 1) * CLIENTS]
                answers = await asyncio.gather(
                    *(
                        post_signup(
                            http, serve.url, {"email": e, "password": password_for(i)}, None
                        )
                        for i, e in enumerate(batch)
                    )
                )
                assert [a.status for a in answers] == [201] * len(batch), answers
        trace = await serve.stop()
    finally:
        serve.kill()
    assert set(emails) <= set(accounts_of(standin).values())
    return emails, trace, serve.port


async def test_no_provider_call_or_201_before_its_commit_is_synced(
    tmp_path: Path, exchange_name: str
) -> None:
    async with running_standin(latency=0.02) as standin:
        port = int(standin.url.rsplit(":", 1)[1])
        emails, trace, service_port = await traced_signups(tmp_path, standin, exchange_name, "full")
        calls = parse_trace(trace)
        wal = str(tmp_path / "full" / "signup.db-wal")
        assert order_violations(calls, wal, service_port, port, emails) == []
        syncs = sum(1 for c in calls if c.name == "fdatasync" and f"{wal}>" in c.args)
        # Group commit: concurrent sign-ups share a commit, and so its sync (two
        # commits a sign-up, one more sync when the WAL rewinds, and the checkpoints').
        print(f"{len(emails)} sign-ups, {syncs} WAL syncs")

        # The same check on the setting that skips the sync finds the order broken.
        emails, trace, service_port = await traced_signups(
            tmp_path, standin, exchange_name, "normal"
        )
        wal = str(tmp_path / "normal" / "signup.db-wal")
        broken = order_violations(parse_trace(trace), wal, service_port, port, emails)
        assert broken, (
            "with synchronous=normal every sign-up was synced in order: the check proves nothing"
        )
        assert all("before its" in problem for problem in broken), broken
