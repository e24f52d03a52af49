"""The e-mail verification link's token: signed (HMAC-SHA256), expiring, for one account.

`v1.<user id, base64url>.<expiry, unix seconds>.<HMAC, base64url>`. The MAC covers a
purpose label, the user id and the expiry, under a key only the service knows
(SIGNUP_VERIFY_KEY): a token cannot be made for another account or a later expiry.
It says nothing about being used: the account's `email_verified` does (a token for an
account already verified is a used one), so one token or several sent for an account
verify it once.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

VERSION = "v1"
_PURPOSE = b"signup/verify-email/v1"
# Longer is not a token: refused before any work (a link is about 120 characters).
MAX_TOKEN_LENGTH = 512


class TokenProblem(enum.StrEnum):
    MALFORMED = "malformed"  # not a token of ours, or its signature does not match
    EXPIRED = "expired"  # ours, but past its expiry


@dataclass(frozen=True, slots=True)
class VerificationClaim:
    """What a good token says: verify this account's address."""

    user_id: str
    expires_at: int  # unix seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, user_id: str, expires_at: int) -> bytes:
    message = b"\x00".join((_PURPOSE, user_id.encode(), str(expires_at).encode()))
    return hmac.new(key, message, hashlib.sha256).digest()


def make_token(key: bytes, user_id: str, expires_at: datetime) -> str:
    """The token that verifies `user_id`'s address until `expires_at`."""
    expiry = int(expires_at.timestamp())
    return ".".join(
        (VERSION, _b64(user_id.encode()), str(expiry), _b64(_mac(key, user_id, expiry)))
    )


def read_token(key: bytes, token: str, now: datetime) -> VerificationClaim | TokenProblem:
    """The claim of a genuine, unexpired token; else what is wrong with it.

    The signature is checked (in constant time) before the expiry is believed.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return TokenProblem.MALFORMED
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[2].isdigit():
        return TokenProblem.MALFORMED
    try:
        user_id = _unb64(parts[1]).decode("utf-8")
        mac = _unb64(parts[3])
    except (binascii.Error, ValueError):
        return TokenProblem.MALFORMED
    expiry = int(parts[2])
    if not user_id or not hmac.compare_digest(mac, _mac(key, user_id, expiry)):
        return TokenProblem.MALFORMED
    if now.timestamp() >= expiry:
        return TokenProblem.EXPIRED
    return VerificationClaim(user_id=user_id, expires_at=expiry)
