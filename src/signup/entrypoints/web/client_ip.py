"""The client address the per-address rate limit counts, from the peer and X-Forwarded-For.

X-Forwarded-For is a list each proxy appends to: the entries left of the last one a
trusted proxy wrote are the client's own writing and prove nothing. So the list is read
from the right, skipping entries that are trusted proxies, and only when the direct peer
is itself a trusted proxy (as uvicorn's `forwarded-allow-ips` does).

- `SIGNUP_TRUSTED_PROXIES` (addresses or networks) set: those are the proxies.
- Only `SIGNUP_TRUST_FORWARDED_FOR=true`: the direct peer, whatever it is, is the one
  proxy and the rightmost entry (the address it appended) is the client. Compatible with
  a single reverse proxy in front; a chain of proxies needs the list.

Every address is made canonical, so that one client has one key however it is spelt:
IPv4-mapped IPv6 is the IPv4 address, legacy IPv4 spellings (`0x01020304`, `16909060`,
`01.02.03.04`, as inet_aton reads them) are the dotted quad, and IPv6 is counted per
network of `ipv6_prefix` bits (one subscriber usually holds a whole /64). An entry that
is no address at all ends the walk: the request counts against the trusted hop that
forwarded it, so garbage can never open a fresh bucket.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import Scope

from signup.addresses import IPAddress, IPNetwork, parse_networks

__all__ = ["ClientAddresses", "IPAddress", "IPNetwork", "parse_address", "parse_networks"]

UNKNOWN = "unknown"
MAX_ENTRY = 64
# What inet_aton may read: digits, hex digits, `x` and dots, nothing else (glibc's
# inet_aton ignores whatever follows a space, so anything with one is refused first).
_LEGACY_IPV4 = re.compile(r"^(?:0[xX][0-9A-Fa-f]+|[0-9]+)(?:\.(?:0[xX][0-9A-Fa-f]+|[0-9]+)){0,3}$")
_HOST_PORT = re.compile(r"^(?P<host>[^:\[\]]+):\d{1,5}$")
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::\d{1,5})?$")


@functools.lru_cache(maxsize=4096)
def parse_address(value: str) -> IPAddress | None:
    """The address `value` names (IPv4-mapped made IPv4, any IPv6 zone dropped), or None.

    Accepts what proxies write: a bare address, `1.2.3.4:port`, `[v6]` or `[v6]:port`.
    """
    text = value.strip()
    if len(text) > MAX_ENTRY:
        return None  # no address is this long; and the cache keeps only short strings
    bracketed = _BRACKETED.match(text)
    if bracketed:
        text = bracketed.group("host")
    else:
        with_port = _HOST_PORT.match(text)
        if with_port:
            text = with_port.group("host")
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        if not _LEGACY_IPV4.match(text):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


@dataclass(frozen=True)
class ClientAddresses:
    """Turns a request's peer and X-Forwarded-For into the key the address limit counts."""

    trust_forwarded_for: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = ()
    ipv6_prefix: int = 64

    @classmethod
    def configure(
        cls, trust_forwarded_for: bool, trusted_proxies: Sequence[str], ipv6_prefix: int
    ) -> ClientAddresses:
        return cls(trust_forwarded_for, parse_networks(trusted_proxies), ipv6_prefix)

    @property
    def reads_forwarded_for(self) -> bool:
        return self.trust_forwarded_for or bool(self.trusted_proxies)

    def key(self, address: IPAddress | None) -> str:
        if address is None:
            return UNKNOWN
        if isinstance(address, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            network = ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False)
            return str(network)
        return str(address)

    def _trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> IPAddress | None:
        """The client's address: the peer's, or the one the last trusted proxy appended."""
        direct = parse_address(peer) if peer else None
        if direct is None or not self.reads_forwarded_for:
            return direct
        if self.trusted_proxies and not self._trusted(direct):
            return direct  # not from a proxy of ours: its X-Forwarded-For is the client's
        entries = [entry for value in forwarded_for for entry in value.split(",")]
        hop = direct
        for entry in reversed(entries):
            address = parse_address(entry)
            if address is None:
                return hop  # not an address: count it against whoever forwarded it
            if not self.trusted_proxies or not self._trusted(address):
                return address
            hop = address
        return hop

    def for_scope(self, scope: Scope) -> str:
        """The rate-limit key of an ASGI request: a canonical address or IPv6 network."""
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = (
            [
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"x-forwarded-for"
            ]
            if self.reads_forwarded_for
            else []
        )
        return self.key(self.client(peer, forwarded))
