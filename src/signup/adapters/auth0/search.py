"""The sweep's user search (`AccountSearch`): `GET /api/v2/users?q=created_at:[A TO B]
&search_engine=v3`, sorted by creation, paged, with totals (docs/auth0.md).

It shares the sign-ups' token, rate gate and retries, and goes behind them: while sign-up
calls wait at the gate, or the tenant's bucket is down to its last few tokens, a search
waits (up to `max_yield_seconds`, then it queues like any call), so a sweep never takes
the slot a person's sign-up needed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from signup.adapters.auth0.accounts import external_account
from signup.adapters.auth0.provider import Auth0IdentityProvider
from signup.adapters.auth0.retry_hints import RETRY_MISCONFIGURED, RETRY_OUTAGE
from signup.domain.errors import ProviderUnavailable
from signup.domain.events import iso_millis
from signup.service_layer.ports import SearchPage

log = structlog.get_logger(__name__)


class Auth0AccountSearch:
    def __init__(
        self,
        provider: Auth0IdentityProvider,
        *,
        reserve: int = 2,
        pause_seconds: float = 0.05,
        max_yield_seconds: float = 30.0,
    ) -> None:
        self._provider = provider
        self.reserve = reserve
        self.pause_seconds = pause_seconds
        self.max_yield_seconds = max_yield_seconds
        self.yielded = 0  # searches that waited for sign-ups first

    async def created_between(
        self, start: datetime, end: datetime, *, page: int, per_page: int
    ) -> SearchPage:
        await self._behind_sign_ups()
        params = {
            "q": f"created_at:[{iso_millis(start)} TO {iso_millis(end)}]",
            "search_engine": "v3",
            "sort": "created_at:1",
            "page": str(page),
            "per_page": str(per_page),
            "include_totals": "true",
        }
        answer = await self._provider.management("GET", self._provider.users_url, params=params)
        if answer.status != 200:
            code, _ = answer.error()
            log.warning("auth0.search.failed", status=answer.status, error=code)
            raise ProviderUnavailable(
                f"Auth0 user search answered {answer.status}",
                retry_after=RETRY_MISCONFIGURED if answer.status < 500 else RETRY_OUTAGE,
            )
        data = answer.json()
        users = data.get("users") if isinstance(data, dict) else None
        total = data.get("total") if isinstance(data, dict) else None
        if not isinstance(users, list) or not isinstance(total, int):
            raise ProviderUnavailable("Auth0 user search answer was not readable")
        found = (external_account(user) for user in users)
        return SearchPage(total, len(users), [a for a in found if a is not None])

    async def _behind_sign_ups(self) -> None:
        gate = self._provider.gate
        waited = 0.0
        while waited < self.max_yield_seconds:
            remaining = gate.remaining
            if gate.queued == 0 and (remaining is None or remaining > self.reserve):
                return
            if waited == 0.0:
                self.yielded += 1
            await asyncio.sleep(self.pause_seconds)
            waited += self.pause_seconds


__all__ = ["Auth0AccountSearch"]
