"""Breached passwords, the k-anonymity way of the Pwned Passwords range API.

The password's SHA-1 (of its UTF-8, upper-case hex) splits in two: the first five hex
digits are all that is ever asked about (`range_key`), and the other 35 are looked up
in the answer, which lists every known suffix under that prefix with its count
(`SUFFIX:COUNT` lines; padding lines have a count of 0).
"""

from __future__ import annotations

import hashlib
import re

BREACHED = "password.breached"
CHECK_UNAVAILABLE = "password.check_unavailable"
BREACHED_MESSAGE = (
    "This password has appeared in a data breach, so attackers try it first. "
    "Please choose another one."
)

_PREFIX = re.compile(r"[0-9A-F]{5}\Z")
_LINE = re.compile(r"([0-9A-Fa-f]{35}):([0-9]{1,12})\Z")


class MalformedRange(ValueError):
    """An answer that is not the documented `SUFFIX:COUNT` lines."""


def range_key(password: str) -> tuple[str, str]:
    """(prefix of 5, suffix of 35): the upper-case hex SHA-1 of the password, split."""
    digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
    return digest[:5], digest[5:]


def is_prefix(prefix: str) -> bool:
    return bool(_PREFIX.match(prefix))


def compact_range(text: str) -> str:
    """The answer's suffixes seen at least once, as `SUFFIX:COUNT` lines (upper-case,
    padding with a count of 0 dropped): a few tens of KB per range, kept in a cache.

    Raises `MalformedRange` on any line that is not `SUFFIX:COUNT`.
    """
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise MalformedRange("a line of the range answer is not SUFFIX:COUNT")
        count = int(match.group(2))
        if count:
            kept.append(f"{match.group(1).upper()}:{count}")
    return "\n".join(kept)


def times_seen(compact: str, suffix: str) -> int:
    """How often the suffix's password was seen in breaches, per a `compact_range`."""
    start = ("\n" + compact).find(f"\n{suffix.upper()}:")
    if start < 0:
        return 0
    begin = start + len(suffix) + 1
    end = compact.find("\n", begin)
    return int(compact[begin : end if end >= 0 else len(compact)])
