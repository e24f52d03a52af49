"""The one `ready: <url>` line `signup serve` prints once the page answers.

Said by the process that runs `signup serve` (uvicorn's supervisor when there are several
web workers), after the app answered `/healthz` on the public port: the line then means
"open this now", whatever the number of workers, and it is said once. uvicorn's own
start-up lines are quiet (log_config.QUIET_LIBRARIES).
"""

from __future__ import annotations

import ipaddress
import threading
import time
import urllib.request

import structlog

log = structlog.get_logger(__name__)


def page_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the page (a wildcard address: loopback)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - names the wildcard, binds nothing
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:  # a host name
        pass
    return f"http://{host}:{port}/signup"


def announce_when_ready(
    host: str, port: int, *, every: float = 0.05, give_up_after: float = 300.0
) -> threading.Thread:
    """Ask `/healthz` until it answers 200, then log `ready: <url>` (in a daemon thread)."""
    url = page_url(host, port)
    health = url.removesuffix("/signup") + "/healthz"
    # Straight to our own socket, whatever http_proxy the environment names.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def watch() -> None:
        deadline = time.monotonic() + give_up_after
        while time.monotonic() < deadline:
            try:
                with opener.open(health, timeout=2) as answer:
                    if answer.status == 200:
                        log.info(f"ready: {url}")
                        return
            except OSError:
                pass
            time.sleep(every)  # the server is still starting: ask again shortly

    thread = threading.Thread(target=watch, name="ready-announcer", daemon=True)
    thread.start()
    return thread
