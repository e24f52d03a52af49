"""A three-node RabbitMQ cluster of a test's own, on loopback, from the installed server.

Each node is a `RabbitNode` (own name, ports, data and log folders, run as the
`rabbitmq` user); the cluster gives them an Erlang cookie of its own (a HOME holding
`.erlang.cookie`, shared by the nodes and rabbitmqctl) and joins the second and third to
the first (`stop_app`, `join_cluster`, `start_app`). `stop()` ends every node whatever
its state and removes the folders.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rabbit_node import CTL, RabbitNode


class RabbitCluster:
    def __init__(self, size: int = 3) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="rabbit-cluster-home-"))
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        user = pwd.getpwnam("rabbitmq")
        for path in (self.home, cookie):
            os.chown(path, user.pw_uid, user.pw_gid)
        cookie.chmod(0o400)
        self.nodes = [RabbitNode(home=self.home) for _ in range(size)]

    @property
    def url(self) -> str:
        """SIGNUP_AMQP_URL for the whole cluster: the first URL, then host:port each."""
        first, *others = self.nodes
        return ",".join([first.url, *(f"127.0.0.1:{node.port}" for node in others)])

    def node_at(self, address: str) -> RabbitNode:
        """The node listening at `host:port` (as `/readyz` and the logs name it)."""
        port = int(address.rsplit(":", 1)[1])
        return next(node for node in self.nodes if node.port == port)

    def start(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            for started in [pool.submit(node.start, 120.0) for node in self.nodes]:
                started.result()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        self.await_all_running()

    def running_nodes(self, asking: RabbitNode | None = None) -> set[str]:
        asker = asking or next(node for node in self.nodes if node.running)
        out = asker.ctl("eval", "rabbit_nodes:all_running().")
        return {name for name in (part.strip(" []\n'") for part in out.split(",")) if name}

    def await_all_running(self, timeout: float = 60.0) -> None:
        import time

        names = {node.name for node in self.nodes}
        deadline = time.monotonic() + timeout
        while True:
            running = set()
            with contextlib.suppress(AssertionError):
                running = self.running_nodes()
            if running >= names:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster not whole: running {running}, members {names}")
            time.sleep(0.5)

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(self.home, ignore_errors=True)


__all__ = ["CTL", "RabbitCluster"]
