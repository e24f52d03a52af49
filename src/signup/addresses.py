"""Web origins, IP networks and broker addresses, one spelling each, as the settings and
the web layer read them.

`https://Partner.Example:443/` and `https://partner.example` are the same origin: a
configured origin that was compared as typed passed the guard but failed its CORS
preflight, so everything that compares origins goes through `normalise_origin`. The
trusted proxies are networks (`parse_networks`), IPv4-mapped IPv6 ones made IPv4.
`SIGNUP_AMQP_URL`'s several broker addresses are split in `split_amqp_urls` only.
Pure functions below the settings, which check their values with them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or networks (`10.0.0.0/8`, `::1`); ValueError names the first bad one."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address or network") from exc
        if isinstance(network, ipaddress.IPv6Network):
            mapped = network.network_address.ipv4_mapped
            if mapped is not None and network.prefixlen >= 96:
                network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
        networks.append(network)
    return tuple(networks)


AMQP_SCHEMES = {"amqp": 5672, "amqps": 5671}


def split_amqp_urls(value: str) -> tuple[str, ...]:
    """The broker addresses of `SIGNUP_AMQP_URL`: one URL, or several comma-separated.

    Each further address is a whole URL (`amqp://user:pass@host2:5672/vhost`) or just
    `host[:port]`, which takes scheme, credentials, virtual host and options
    (`?heartbeat=…&cafile=…`) from the first. ValueError names the bad address by its
    position and node, never with its password (a comma in a password is written `%2C`).
    """
    parts = [part.strip() for part in value.split(",")]
    if not any(parts):
        raise ValueError("SIGNUP_AMQP_URL holds no broker address")
    if not all(parts):
        raise ValueError("SIGNUP_AMQP_URL has an empty address between commas")
    first = _amqp_parts(parts[0], 1)
    urls = [parts[0]]
    for index, part in enumerate(parts[1:], start=2):
        if "://" in part:
            _amqp_parts(part, index)
            urls.append(part)
            continue
        try:
            node = urlsplit(f"//{part}")
            port = node.port
        except ValueError:
            raise ValueError(f"broker address {index} is not host[:port] or a URL") from None
        if not node.hostname or node.username is not None or node.path or node.query:
            raise ValueError(f"broker address {index} is not host[:port] or a URL")
        userinfo = first.netloc.rpartition("@")[0]
        host = f"[{node.hostname}]" if ":" in node.hostname else node.hostname
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += host if port is None else f"{host}:{port}"
        query = f"?{first.query}" if first.query else ""
        urls.append(f"{first.scheme}://{netloc}{first.path}{query}")
    return tuple(urls)


def _amqp_parts(url: str, index: int) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"broker address {index} is not a valid URL") from None
    if parts.scheme.lower() not in AMQP_SCHEMES:
        raise ValueError(f"broker address {index}: the scheme must be amqp or amqps")
    if not parts.hostname:
        raise ValueError(f"broker address {index} names no host")
    return parts


def amqp_node(url: str) -> str:
    """`host:port` of a broker URL: what logs and `/readyz` show (never the password)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or AMQP_SCHEMES.get(parts.scheme.lower(), 5672)}"
