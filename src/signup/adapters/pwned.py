"""The `PasswordRanges` port over HTTP: a Pwned Passwords range API.

`GET {base}/range/{prefix}` with `Add-Padding: true` (the answer is padded with
zero-count suffixes, so its size does not tell which prefix was asked), one long-lived
aiohttp session made on first use, every exchange bounded by the time-out. Only the
five-digit prefix leaves the service; nothing of the request is logged here.
"""

from __future__ import annotations

import aiohttp

from signup.domain.breached import is_prefix
from signup.service_layer.ports import RangeUnavailable
from signup.settings import Settings

# An answer is a few tens of KB (~1,000 lines of 40 bytes with padding); more is not one.
MAX_ANSWER_BYTES = 1 << 20


class PwnedRanges:
    def __init__(self, base_url: str, *, timeout_seconds: float, max_connections: int = 32):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PwnedRanges:
        return cls(settings.breached_api_url, timeout_seconds=settings.breached_timeout_seconds)

    def _session(self) -> aiohttp.ClientSession:
        session = self._http
        if session is None or session.closed:
            t = self.timeout_seconds
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=15.0, ttl_dns_cache=300
                ),
                timeout=aiohttp.ClientTimeout(total=t, connect=t, sock_connect=t, sock_read=t),
                headers={"User-Agent": "signup-breached-check/1", "Add-Padding": "true"},
                raise_for_status=False,
            )
            self._http = session
        return session

    async def range(self, prefix: str) -> str:
        if not is_prefix(prefix):
            raise ValueError("a range prefix is five upper-case hex digits")
        try:
            async with self._session().get(f"{self.base_url}/range/{prefix}") as resp:
                if resp.status != 200:
                    raise RangeUnavailable(f"the range API answered {resp.status}")
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The exception's text may hold the URL, and so the prefix: only its type.
            raise RangeUnavailable(f"the range API is unreachable: {type(exc).__name__}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise RangeUnavailable("the range API's answer is too large")
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise RangeUnavailable("the range API's answer is not text") from None

    async def close(self) -> None:
        session, self._http = self._http, None
        if session is not None and not session.closed:
            await session.close()
