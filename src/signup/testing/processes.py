"""Start `signup` commands as real processes for end-to-end and fault tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from signup.testing.server import free_port


class ServiceProcess:
    """`python -m signup serve` on a free port, with its own environment and log file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *args: str, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SIGNUP_LOG_FORMAT": "json", **env}
        # A free operations port unless the test names one: never the shared default 9100.
        if "SIGNUP_OPS_PORT" not in env:
            self.env["SIGNUP_OPS_PORT"] = str(free_port())
        self.ops_url = f"http://127.0.0.1:{self.env['SIGNUP_OPS_PORT']}"
        self.log_path = log_path
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        log = self.log_path.open("ab")
        command = [
            sys.executable,
            "-m",
            "signup",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.args,
        ]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"signup serve exited with {self.process.returncode}: see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"signup serve did not become healthy: see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a crash or an OOM kill would leave it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "signup", *args],
        env={**os.environ, "SIGNUP_LOG_FORMAT": "console", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
