"""Probes `/healthz` on a new connection every 20 ms, in a process of its own, as an
orchestrator would: a flood in the test process cannot delay the probes' own clock.

`python healthz_prober.py PORT` probes until a line arrives on stdin, then prints every
result as JSON; `probing(port)` runs it around a block.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

PROBE_EVERY = 0.02
PROBE_DEADLINE = 0.1


def _probe_once(port: int) -> tuple[float | None, str]:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as exc:
        return None, repr(exc)
    elapsed = time.perf_counter() - started
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return (elapsed, status) if status == "HTTP/1.1 200 OK" else (None, status)


def probe_main(port: int) -> None:
    """Probe until a line arrives on stdin; then print every result as JSON."""
    results: list[tuple[float | None, str]] = []
    while True:
        result = _probe_once(port)
        if not results:
            print("ready" if result[0] is not None else f"failed {result[1]}", flush=True)
        results.append(result)
        ready, _, _ = select.select([sys.stdin], [], [], PROBE_EVERY)
        if ready:
            break
    print(json.dumps(results), flush=True)


@dataclass
class Probes:
    results: list[tuple[float | None, str]] = field(default_factory=list)

    def assert_all_answered_in_time(self, at_least: int) -> None:
        failed = [status for latency, status in self.results if latency is None]
        assert not failed, f"{len(failed)} of {len(self.results)} probes failed: {failed[:5]}"
        latencies = [latency for latency, _ in self.results if latency is not None]
        assert len(latencies) >= at_least, f"only {len(latencies)} probes ran"
        slowest = max(latencies)
        print(f"/healthz: {len(latencies)} probes, slowest {slowest * 1000:.1f} ms")
        assert slowest < PROBE_DEADLINE, (
            f"/healthz took {slowest * 1000:.1f} ms at worst "
            f"(of {len(latencies)}; median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms)"
        )


@contextlib.contextmanager
def probing(port: int) -> Iterator[Probes]:
    prober = subprocess.Popen(
        [sys.executable, __file__, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert prober.stdout is not None
    first = prober.stdout.readline().strip()
    probes = Probes()
    try:
        assert first == "ready", first
        yield probes
    finally:
        out, _ = prober.communicate("stop\n", timeout=30)
        assert prober.returncode == 0 and out, f"the prober failed ({prober.returncode})"
        probes.results = [(latency, status) for latency, status in json.loads(out)]


if __name__ == "__main__":
    probe_main(int(sys.argv[1]))
