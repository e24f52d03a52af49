"""The proof-of-work gate in front of the sign-up: one fresh solution per account asked for.

A sign-up must carry the solution of a challenge this service signed (ALTCHA's format,
`signup.adapters.challenge`), before it expires, used by no other request. It is checked
before anything else is done with the request: a refused one reaches neither the
identity provider nor the database's sign-ups.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from signup.domain.errors import ChallengeRefused
from signup.service_layer.ports import ChallengeSigner, SpentSolutions


def owner_of(idempotency_key: str | None) -> str:
    """Who spends a solution: the request's Idempotency-Key (digested), so that the same
    request repeated after a lost answer passes again; without a key, nobody else."""
    if idempotency_key:
        return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return "once-" + secrets.token_hex(13)


@dataclass
class ChallengeGate:
    signer: ChallengeSigner
    spent: SpentSolutions
    clock: Callable[[], datetime]
    ttl: timedelta

    def issue(self) -> dict[str, Any]:
        return self.signer.issue(self.clock() + self.ttl)

    async def redeem(self, token: str | None, idempotency_key: str | None) -> None:
        """Accept the solution once; raises `ChallengeRefused` (missing, invalid, expired,
        used). Signature first: an expired or used verdict is only given for our own."""
        if not token:
            raise ChallengeRefused("missing")
        solution = self.signer.check(token)
        if solution is None:
            raise ChallengeRefused("invalid")
        if solution.expires_at <= self.clock():
            raise ChallengeRefused("expired")
        if not await self.spent.spend(solution.id, owner_of(idempotency_key), solution.expires_at):
            raise ChallengeRefused("used")

    async def close(self) -> None:
        await self.spent.close()
