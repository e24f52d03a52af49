"""The operations port's listening socket (SIGNUP_OPS_HOST:SIGNUP_OPS_PORT).

Apart from ops.py so that `signup serve`'s supervisor can check the port without
importing the web stack.
"""

from __future__ import annotations

import socket

from signup.settings import Settings


class OpsPortUnavailable(RuntimeError):
    pass


def bind_ops_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """A bound TCP socket; `shared` (SO_REUSEPORT) lets each web worker bind its own."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise OpsPortUnavailable(f"operations host {host!r}: {exc}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OpsPortUnavailable(
            f"operations port {host}:{port} is unavailable ({exc.strerror}); "
            "set SIGNUP_OPS_PORT to a free port, or empty to serve no operations port"
        ) from exc
    sock.set_inheritable(False)
    return sock


def check_ops_port(settings: Settings) -> None:
    """Fail before any worker starts when another process holds the operations port.

    The workers bind it with SO_REUSEPORT, which would otherwise share it silently with
    any other process of the same user that does too (and crash-loop the workers when
    one holds it without): this bind, without the option, fails in both cases.
    """
    if settings.ops_port is not None:
        bind_ops_socket(settings.ops_host, settings.ops_port, shared=False).close()
