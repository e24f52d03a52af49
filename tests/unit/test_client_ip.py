"""The per-address limit's client address: canonical spellings, proxies, IPv6 networks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from signup.addresses import normalise_origin
from signup.entrypoints.web.client_ip import UNKNOWN, ClientAddresses, parse_address
from signup.settings import Settings

PROXIES = ClientAddresses.configure(False, ["10.0.0.0/8", "192.0.2.7"], 64)
PEER_AS_PROXY = ClientAddresses.configure(True, [], 64)
DIRECT = ClientAddresses.configure(False, [], 64)


def key(addresses: ClientAddresses, peer: str | None, *forwarded: str) -> str:
    return addresses.key(addresses.client(peer, list(forwarded)))


@pytest.mark.parametrize(
    "spelling",
    [
        "1.2.3.4",
        "::ffff:1.2.3.4",
        "::FFFF:0102:0304",
        "01.02.03.04",
        "0x01020304",
        "16909060",
        "1.2.3.4:5678",
        "[::ffff:1.2.3.4]:443",
        " 1.2.3.4 ",
    ],
)
def test_every_spelling_of_one_ipv4_address_is_one_key(spelling: str) -> None:
    assert key(DIRECT, spelling) == "1.2.3.4"
    assert key(PEER_AS_PROXY, "127.0.0.1", spelling) == "1.2.3.4"


@pytest.mark.parametrize(
    "garbage",
    ["unknown", "evil", "1.2.3.4 5.6.7.8", "0x1g", "", "1.2.3.4.5", "x" * 500, "_hidden"],
)
def test_what_is_no_address_is_refused(garbage: str) -> None:
    assert parse_address(garbage) is None


def test_ipv6_is_counted_per_64_and_the_prefix_is_a_setting() -> None:
    a, b = "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"
    assert key(DIRECT, a) == key(DIRECT, b) == "2001:db8:1:2::/64"
    assert key(DIRECT, "2001:db8:1:3::1") != key(DIRECT, a)
    assert key(DIRECT, "fe80::1%eth0") == "fe80::/64"
    per_56 = ClientAddresses.configure(False, [], 56)
    assert key(per_56, "2001:db8:1:2::1") == key(per_56, "2001:db8:1:ff::1") == "2001:db8:1::/56"
    exact = ClientAddresses.configure(False, [], 128)
    assert key(exact, a) != key(exact, b)


def test_without_forwarding_the_header_is_ignored() -> None:
    assert key(DIRECT, "198.51.100.1", "203.0.113.5") == "198.51.100.1"
    assert key(DIRECT, None) == UNKNOWN


def test_peer_as_the_one_proxy_takes_the_rightmost_entry() -> None:
    # What the client wrote is left of what its proxy appended.
    assert key(PEER_AS_PROXY, "127.0.0.1", "6.6.6.6, 198.51.100.9") == "198.51.100.9"
    assert key(PEER_AS_PROXY, "127.0.0.1", "6.6.6.6", "198.51.100.9") == "198.51.100.9"
    assert key(PEER_AS_PROXY, "127.0.0.1") == "127.0.0.1"
    assert key(PEER_AS_PROXY, "127.0.0.1", "not-an-ip") == "127.0.0.1"


def test_trusted_proxies_are_skipped_from_the_right() -> None:
    chain = "6.6.6.6, 198.51.100.9, 10.1.1.1, 192.0.2.7"
    assert key(PROXIES, "10.0.0.5", chain) == "198.51.100.9"
    # A client that writes a trusted proxy's address gains nothing: its proxy appends it.
    assert key(PROXIES, "10.0.0.5", "10.9.9.9, 198.51.100.9") == "198.51.100.9"
    # Only hops that are proxies: the farthest one is all there is.
    assert key(PROXIES, "10.0.0.5", "10.2.2.2, 192.0.2.7") == "10.2.2.2"
    # Garbage where an address should be: counted against the proxy that forwarded it.
    assert key(PROXIES, "10.0.0.5", "1.1.1.1, bogus, 10.3.3.3") == "10.3.3.3"


def test_a_peer_that_is_no_trusted_proxy_is_the_client_whatever_it_forwards() -> None:
    assert key(PROXIES, "198.51.100.77", "1.2.3.4") == "198.51.100.77"
    assert key(PROXIES, "::ffff:10.0.0.5", "198.51.100.9") == "198.51.100.9"


def test_for_scope_joins_repeated_headers_in_order() -> None:
    scope: dict[str, Any] = {
        "client": ("10.0.0.5", 5555),
        "headers": [
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"host", b"example"),
            (b"x-forwarded-for", b"198.51.100.9"),
        ],
    }
    assert PROXIES.for_scope(scope) == "198.51.100.9"
    assert DIRECT.for_scope(scope) == "10.0.0.5"
    assert DIRECT.for_scope({"client": None, "headers": []}) == UNKNOWN


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_settings_refuse_bad_proxies_and_origins() -> None:
    with pytest.raises(ValidationError, match="'bogus' is not an IP address or network"):
        settings(trusted_proxies="10.0.0.0/8, bogus")
    assert settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ["10.0.0.0/8", "::1"]
    with pytest.raises(ValidationError, match=r"'partner\.example' is not an origin"):
        settings(allowed_origins="partner.example")
    with pytest.raises(ValidationError, match="is not an origin"):
        settings(allowed_origins="https://partner.example/app")
    assert settings(allowed_origins="HTTPS://Partner.Example:443/").allowed_origins == [
        "https://partner.example"
    ]


def test_several_processes_without_a_shared_store_are_refused() -> None:
    with pytest.raises(ValidationError, match="SIGNUP_WEB_CONCURRENCY=2 with rate limits on"):
        settings(web_concurrency=2)
    with pytest.raises(ValidationError, match="needs SIGNUP_REDIS_URL"):
        settings(web_concurrency=2, rate_limit_per_ip="", redis_url="")
    assert settings(web_concurrency=2, redis_url="redis://127.0.0.1:6379/0").web_concurrency == 2
    off = settings(web_concurrency=3, rate_limit_per_ip="", rate_limit_per_email=" ")
    assert off.web_concurrency == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://partner.example", "https://partner.example"),
        ("https://partner.example/", "https://partner.example"),
        ("HTTPS://Partner.EXAMPLE:443", "https://partner.example"),
        ("http://partner.example:80/", "http://partner.example"),
        ("http://partner.example:8080", "http://partner.example:8080"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("partner.example", None),
        ("https://partner.example/path", None),
        ("https://user@partner.example", None),
        ("https://partner.example:99999", None),
        ("*", None),
    ],
)
def test_one_spelling_of_an_origin(value: str, expected: str | None) -> None:
    assert normalise_origin(value) == expected


def test_a_site_url_gives_its_origin_whatever_its_path() -> None:
    assert normalise_origin("https://Example.com/join/", any_path=True) == "https://example.com"
