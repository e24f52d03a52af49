"""Web origins and IP networks, one spelling each, as the settings and the web layer read them.

`https://Partner.Example:443/` and `https://partner.example` are the same origin: a
configured origin that was compared as typed passed the guard but failed its CORS
preflight, so everything that compares origins goes through `normalise_origin`. The
trusted proxies are networks (`parse_networks`), IPv4-mapped IPv6 ones made IPv4.
Pure functions below the settings, which check their values with them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

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
