"""Run the web app in-process on a free loopback port, over real HTTP (for tests)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from signup.bootstrap import Container
from signup.entrypoints.web.app import create_app
from signup.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(
    settings: Settings, container: Container | None = None, *, run_relay: bool = True
) -> AsyncIterator[str]:
    """Serve `create_app(settings)` and yield its base URL; stop it on exit."""
    port = free_port()
    app = create_app(settings, container=container, run_relay=run_relay)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # as `signup serve`: the app alone reads X-Forwarded-For
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
