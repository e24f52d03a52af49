"""One spelling of a web origin, so the guard, the CORS layer and the settings agree.

`https://Partner.Example:443/` and `https://partner.example` are the same origin: a
configured origin that was compared as typed passed the guard but failed its CORS
preflight. Everything that compares origins goes through `normalise_origin`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str, *, any_path: bool = False) -> str | None:
    """`scheme://host[:port]`, lower-case, default port dropped; None if not an origin.

    An origin has no path: only a trailing `/` is forgiven, unless `any_path` (a site's
    URL, whose origin is wanted). User info, query and fragment are never an origin's.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not scheme or not host:
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None
    if not any_path and parts.path not in ("", "/"):
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
