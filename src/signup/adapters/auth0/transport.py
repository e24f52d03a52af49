"""HTTP to Auth0 over one long-lived aiohttp session, telling "never sent" from "lost".

Why aiohttp and one session: docs/decisions/0011-aiohttp-for-auth0.md. The split between
a request that never went out (`NotSent`: safe to call it unavailable) and one whose
answer was lost (`Lost`: it may have been carried out) is what the provider's outcomes
rest on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

# A request that could not even be written (stale pooled connection) goes out again.
_STALE_RETRIES: Final = 2


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def error(self) -> tuple[str, str]:
        """(errorCode or error, message) of an error answer, empty strings if absent."""
        data = self.json()
        if not isinstance(data, dict):
            return "", ""
        code = data.get("errorCode") or data.get("error") or ""
        message = data.get("message") or data.get("error_description") or ""
        return str(code), str(message)


class NotSent(Exception):
    """The request never reached Auth0: nothing was carried out."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Lost(Exception):
    """The request went out but its answer did not come back: it may have been done."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class HttpTransport:
    """One exchange at a time per call; the session is made on first use and after close."""

    def __init__(self, *, timeout_seconds: float, max_connections: int) -> None:
        self.timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        session = self._http
        if session is None or session.closed:
            t = self.timeout_seconds
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=15.0,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # `total` bounds the whole exchange; aiohttp reports a timeout before the
                # request went out as ConnectionTimeoutError, which we tell apart.
                timeout=aiohttp.ClientTimeout(total=t, connect=t, sock_connect=t, sock_read=t),
                headers={
                    "Accept": "application/json",
                    "User-Agent": "signup-auth0/1",
                },
                raise_for_status=False,
            )
            self._http = session
        return session

    async def close(self) -> None:
        session, self._http = self._http, None
        if session is not None and not session.closed:
            await session.close()

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """The answer, whatever its status; `NotSent` or `Lost` when there is none."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        session = self._session()
        for attempt in range(_STALE_RETRIES + 1):
            try:
                async with session.request(
                    method, url, data=body, headers=headers, params=params
                ) as resp:
                    raw = await resp.read()
                    return Answer(resp.status, raw, resp.headers)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Refused, DNS, TLS handshake, connect timeout, waiting for a pooled
                # connection: the request never went out.
                raise NotSent(f"{type(exc).__name__}: {exc}") from exc
            except aiohttp.ClientOSError as exc:
                if not write_failed(exc):
                    raise Lost(f"{type(exc).__name__}: {exc}") from exc
                # The request could not be written (a pooled keep-alive connection the
                # server had closed): nothing reached Auth0, so another connection may try.
                if attempt == _STALE_RETRIES:
                    raise NotSent(f"{type(exc).__name__}: {exc}") from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Read timeout, server disconnect, truncated answer: it may have been done.
                raise Lost(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover


def write_failed(exc: aiohttp.ClientOSError) -> bool:
    """True when aiohttp could not write the request at all (so it was never carried out)."""
    return isinstance(exc.strerror, str) and exc.strerror.startswith("Can not write request")


__all__ = ["Answer", "HttpTransport", "Lost", "NotSent", "write_failed"]
