"""Proof-of-work challenges in ALTCHA's format (the `altcha` library), and the solutions
already used: in the service's database, or in Redis when SIGNUP_REDIS_URL is set.

A challenge is `{"algorithm": "SHA-256", "challenge", "maxnumber", "salt", "signature"}`:
`challenge` is SHA-256(salt + number) for a secret random number up to `maxnumber`,
`signature` its HMAC-SHA256 under our key, and the salt carries the expiry
(`…?expires=<unix seconds>&`), so it is signed too. A solution is the base64 of the JSON
`{"algorithm", "challenge", "number", "salt", "signature"}` that ALTCHA's widget
produces. Checking one costs two SHA-256 and one HMAC per key tried, microseconds
(docs/abuse.md, "Proof of work").
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

import coredis
from altcha.v1 import ChallengeOptions, PayloadType, create_challenge, verify_solution

from signup.adapters.sql.repositories import SqlTransaction
from signup.adapters.sql.unit_of_work import SqlUnitOfWork
from signup.service_layer.ports import SignedSolution
from signup.service_layer.unit_of_work import Transaction

ALGORITHM: Final = "SHA-256"
# A widget's solution is about 250 characters; anything far longer is not one.
MAX_TOKEN = 2048


class AltchaSigner:
    """Signs with `key`; recognises solutions signed with it or with `previous_keys`
    (a rotation: challenges handed out before it stay good until they expire)."""

    def __init__(self, key: str, previous_keys: Sequence[str], difficulty: int) -> None:
        self._key = key
        self._keys = (key, *(k for k in previous_keys if k and k != key))
        self._difficulty = difficulty

    def issue(self, expires_at: datetime) -> dict[str, Any]:
        challenge = create_challenge(
            ChallengeOptions(
                algorithm=ALGORITHM,
                max_number=self._difficulty,
                hmac_key=self._key,
                expires=expires_at,
            )
        )
        return {
            "algorithm": challenge.algorithm,
            "challenge": challenge.challenge,
            "maxnumber": challenge.max_number,
            "salt": challenge.salt,
            "signature": challenge.signature,
        }

    def check(self, token: str) -> SignedSolution | None:
        payload = _payload(token)
        if payload is None:
            return None
        expires = _expiry(payload["salt"])
        if expires is None:
            return None  # every challenge we sign says when it expires
        for key in self._keys:
            verified, _ = verify_solution(cast(PayloadType, payload), key, check_expires=False)
            if verified:
                return SignedSolution(payload["challenge"], expires)
        return None


def _payload(token: str) -> dict[str, Any] | None:
    """The solution's fields, checked for shape (the library trusts its input's types)."""
    if len(token) > MAX_TOKEN:
        return None
    try:
        data = json.loads(base64.b64decode(token, validate=True))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("algorithm") != ALGORITHM:
        return None
    if not all(isinstance(data.get(k), str) for k in ("challenge", "salt", "signature")):
        return None
    number = data.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        return None
    return data


def _expiry(salt: str) -> datetime | None:
    _, _, query = salt.partition("?")
    values = urllib.parse.parse_qs(query).get("expires", [])
    if len(values) != 1 or not values[0].isdigit():
        return None
    return datetime.fromtimestamp(int(values[0]), UTC)


class DatabaseSpentSolutions:
    """Used solutions in `spent_challenges`, written through the unit of work."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def spend(self, solution_id: str, owner: str, expires_at: datetime) -> bool:
        async def work(tx: Transaction) -> bool:
            assert isinstance(tx, SqlTransaction)
            return await tx.challenges.spend(solution_id, owner, expires_at)

        return await self._uow.run(work)

    async def prune_expired(self, before: datetime, limit: int) -> int:
        async def work(tx: Transaction) -> int:
            assert isinstance(tx, SqlTransaction)
            return await tx.challenges.prune_expired(before, limit)

        return await self._uow.run(work)

    async def close(self) -> None:
        return None  # the unit of work is the container's to close


class RedisSpentSolutions:
    """Used solutions as Redis keys that expire with them (`SET NX EXAT`)."""

    def __init__(self, url: str, prefix: str = "signup:challenge:") -> None:
        self._redis: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix

    async def spend(self, solution_id: str, owner: str, expires_at: datetime) -> bool:
        key = self._prefix + solution_id
        # The key lives a minute past the solution: the clocks of the web processes and
        # of Redis need not agree to the second.
        until = int(expires_at.timestamp()) + 60
        if await self._redis.set(key, owner, condition=coredis.PureToken.NX, exat=until):
            return True
        return bool(await self._redis.get(key) == owner)

    async def close(self) -> None:
        self._redis.connection_pool.disconnect()
