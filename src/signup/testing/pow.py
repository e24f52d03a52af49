"""Solving proof-of-work challenges as ALTCHA's widget does, for tests and the benchmark.

`solve` answers a challenge from `GET /signup/challenge` with the token a page would post
in `challenge`: the base64 of `{"algorithm", "challenge", "number", "salt", "signature"}`.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson


def solve(challenge: dict[str, Any]) -> str:
    """The solution token of `challenge` (SHA-256), found by trying each number in turn."""
    if challenge["algorithm"] != "SHA-256":
        raise ValueError(f"cannot solve {challenge['algorithm']!r}")
    salt: str = challenge["salt"]
    target = challenge["challenge"]
    for number in range(int(challenge["maxnumber"]) + 1):
        if hashlib.sha256(f"{salt}{number}".encode()).hexdigest() == target:
            return token(challenge, number)
    raise ValueError("no number up to maxnumber solves this challenge")


def token(challenge: dict[str, Any], number: int) -> str:
    """The token a page posts for `challenge` answered with `number` (right or not)."""
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(orjson.dumps(payload)).decode()
