"""A RabbitMQ node of a test's own, from the installed `rabbitmq-server`.

A test that alarms, stops or restarts a broker does it to this node, never to the
shared one on 5672. The node runs as the `rabbitmq` user (its Erlang cookie) under its
own name, ports and directories; `stop()` ends it whatever state it is in.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from signup.testing.server import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class RabbitNode:
    def __init__(self, home: Path | None = None) -> None:
        # HOME holds the Erlang cookie the node and rabbitmqctl share: the `rabbitmq`
        # user's own, or a cluster's (tests/faults/rabbit_cluster.py).
        self.home = home or Path("/var/lib/rabbitmq")
        self.name = f"signup-test-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="rabbit-node-"))
        self._process: subprocess.Popen[bytes] | None = None
        user = pwd.getpwnam("rabbitmq")
        self._uid, self._gid = user.pw_uid, user.pw_gid

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # its .erlang.cookie, shared with rabbitmqctl
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
        }

    def start(self, timeout: float = 60.0) -> None:
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\nheartbeat = 60\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(exist_ok=True)
        for path in [self.base, *self.base.rglob("*")]:
            os.chown(path, self._uid, self._gid)
        self._process = subprocess.Popen(
            ["/usr/sbin/runuser", "-u", "rabbitmq", "--", SERVER],
            env=self._env(),
            cwd=self.base,
            stdout=(self.base / "stdout.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:  # await_startup fails at once until the node has registered
            try:
                self.ctl("await_startup", timeout=timeout)
                return
            except AssertionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise
                time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """`rabbitmqctl -n NODE ARGS`: its output; fails the test on a non-zero exit."""
        result = subprocess.run(
            ["/usr/sbin/runuser", "-u", "rabbitmq", "--", CTL, "-n", self.name, *args],
            env=self._env(),
            # Its own folder: in a working directory the rabbitmq user cannot read (a
            # clone in a 0700 mktemp folder) Erlang prints eacces reports into the output.
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"rabbitmqctl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )
        return result.stdout

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def vm_pid(self) -> int | None:
        """The Erlang VM's pid (its pid file), for a `kill -9`."""
        pid_file = self.base / "node.pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        """SIGKILL the Erlang VM, as a crash of the host would end it; `restart()` after."""
        pid = self.vm_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None
        (self.base / "node.pid").unlink(missing_ok=True)

    def restart(self, timeout: float = 90.0) -> None:
        """Start the node again on its data (after `kill9`), as a rebooted host does."""
        self.start(timeout)

    def connections_named(self, name: str) -> int:
        """Connections a client of this name opened (the node's log names each)."""
        text = "".join(p.read_text(errors="replace") for p in (self.base / "log").glob("*.log"))
        return len(re.findall(rf"{re.escape(name)}\): user '[^']*' authenticated", text))

    def log_tail(self, lines: int = 30) -> str:
        out = self.base / "stdout.log"
        return (
            "\n".join(out.read_text(errors="replace").splitlines()[-lines:]) if out.exists() else ""
        )

    def stop(self) -> None:
        """End the node: politely, then by force; remove its directories."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.ctl("shutdown", timeout=30)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # The Erlang VM may outlive the runuser wrapper: its pid file names it.
        pid_file = self.base / "node.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                shutil.rmtree(self.base)
                return
            except OSError:
                time.sleep(0.2)  # files still held open by a node going down
