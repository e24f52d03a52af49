"""What the stand-in holds in memory: users, their indexes, tokens, passwords, counters."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    token_requests: int = 0
    create_calls: int = 0
    lookup_calls: int = 0
    search_calls: int = 0
    rate_limited: int = 0  # 429 answers, from the bucket or injected
    token_status: Counter[int] = field(default_factory=Counter)
    create_status: Counter[int] = field(default_factory=Counter)
    lookup_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "create_calls": self.create_calls,
            "lookup_calls": self.lookup_calls,
            "search_calls": self.search_calls,
            "rate_limited": self.rate_limited,
            "token_status": {str(k): v for k, v in self.token_status.items()},
            "create_status": {str(k): v for k, v in self.create_status.items()},
            "lookup_status": {str(k): v for k, v in self.lookup_status.items()},
            "faults": dict(self.faults),
        }


@dataclass
class StandinState:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # by user_id
    counters: Counters = field(default_factory=Counters)
    # (connection, lower-cased e-mail) → user_id, and (connection, username) → user_id
    by_email: dict[tuple[str, str], str] = field(default_factory=dict)
    by_username: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[str, tuple[float, str]] = field(default_factory=dict)  # → (expiry, scope)
    # user_id → (salt, salted SHA-256 of the password): kept apart from the user objects,
    # which never show it, as Auth0's never do; only `password_matches` reads it.
    passwords: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    # user_id → when (time.monotonic) the search index has it (created + the index delay).
    indexed_at: dict[str, float] = field(default_factory=dict)

    def users_by_email(self, email: str) -> list[dict[str, Any]]:
        wanted = email.lower()
        return [u for u in self.users.values() if u.get("email") == wanted]


def password_digest(salt: bytes, password: str) -> bytes:
    # A fast hash is enough: the stand-in holds test passwords, in memory, for its own
    # life, and only so that a test can ask which password an account got.
    return hashlib.sha256(salt + password.encode()).digest()
