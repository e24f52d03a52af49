"""Pushing contacts to the CRM: the signed-webhook HTTP adapter of the `Crm` port
(`signup.service_layer.ports`).

Requests are signed the Standard Webhooks way (https://www.standardwebhooks.com/):
`webhook-id` (the event id, stable across retries so the receiver can deduplicate),
`webhook-timestamp` (unix seconds) and `webhook-signature` =
`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key is the
base64-decoded part of the `whsec_…` secret.

Answers: 2xx done; 408, 429, 5xx, network faults and timeouts are `TransientFailure`
(retried); any other status is `PermanentFailure` (parked).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from signup.service_layer.failures import PermanentFailure, TransientFailure
from signup.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
RETRYABLE_STATUSES = frozenset({408, 429})


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the CRM secret must be `whsec_` followed by base64") from exc
    if not key:
        raise ValueError("the CRM secret is empty")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class HttpCrm:
    """POSTs signed JSON to one URL over a single long-lived `aiohttp.ClientSession`.

    The session is opened on first use (inside the running event loop, never at
    import or construction time) and closed by `close()`.
    """

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._key = signing_key(secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpCrm:
        if not settings.crm_url or settings.crm_secret is None:
            raise ValueError("the CRM-sync worker needs SIGNUP_CRM_URL and SIGNUP_CRM_SECRET")
        return cls(
            url=settings.crm_url,
            secret=settings.crm_secret.get_secret_value(),
            timeout=settings.crm_timeout_seconds,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": "signup-crm-sync"},
                raise_for_status=False,
            )
        return self._session

    async def push_contact(self, idempotency_key: str, contact: Mapping[str, Any]) -> None:
        body = orjson.dumps(dict(contact))
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": idempotency_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, idempotency_key, timestamp, body),
        }
        try:
            async with self._client().post(
                self._url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                detail = (await response.text(errors="replace"))[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientFailure(f"CRM unreachable: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        reason = f"CRM answered {status}: {detail}".rstrip(": ")
        if status in RETRYABLE_STATUSES or status >= 500:
            raise TransientFailure(reason)
        raise PermanentFailure(reason)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
