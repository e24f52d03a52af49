"""Retry-After hints (seconds) for the caller's 503, by what went wrong."""

from __future__ import annotations

from typing import Final

# Auth0 unreachable, silent or answering 5xx: worth another try soon.
RETRY_OUTAGE: Final = 5.0
# Our own configuration (credentials, grant, connection, scope): a person must fix it.
RETRY_MISCONFIGURED: Final = 30.0
# The rate limit: a slot frees within about a second.
RETRY_BUSY: Final = 1.0
