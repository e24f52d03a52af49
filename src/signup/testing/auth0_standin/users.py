"""`POST /api/v2/users`: the body checked as Auth0 checks it, and the user it makes.

Messages, error codes and the user object's fields follow docs/auth0.md, since the
service maps these answers (a 400 on a property, a 409 for an existing e-mail) to its
own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson

from .answers import ApiError
from .config import StandinConfig
from .policy import check_password
from .state import StandinState, password_digest

_STRING_PROPS = frozenset(
    {
        "connection",
        "email",
        "password",
        "given_name",
        "family_name",
        "name",
        "nickname",
        "picture",
        "user_id",
        "username",
        "phone_number",
    }
)
_BOOL_PROPS = frozenset({"email_verified", "verify_email", "blocked"})
_OBJECT_PROPS = frozenset({"user_metadata", "app_metadata"})
_ALLOWED_PROPS = _STRING_PROPS | _BOOL_PROPS | _OBJECT_PROPS
_MAX_LENGTH = {"given_name": 150, "family_name": 150, "name": 300, "nickname": 300}
_DESCRIPTIONS = {
    "connection": "Name of the connection this user should be created in.",
    "email": "The user's email.",
    "password": "Initial password for this user.",
    "given_name": "The user's given name(s).",
    "family_name": "The user's family name(s).",
    "name": "The user's full name.",
    "nickname": "The user's nickname.",
    "picture": "A URI pointing to the user's picture.",
    "username": "The user's username.",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _payload_error(detail: str, prop: str | None = None) -> ApiError:
    where = f" on property {prop} ({_DESCRIPTIONS.get(prop, prop)})" if prop else ""
    return ApiError(400, f"Payload validation error: '{detail}'{where}.", "invalid_body")


def _check_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _payload_error("Invalid JSON") from None
    if not isinstance(body, dict):
        raise _payload_error(f"Expected type object but found type {type(body).__name__}")
    extra = [key for key in body if key not in _ALLOWED_PROPS]
    if extra:
        raise _payload_error(f"Additional properties not allowed: {','.join(extra)}")
    for key, value in body.items():
        expected, ok = (
            ("string", isinstance(value, str))
            if key in _STRING_PROPS
            else ("boolean", isinstance(value, bool))
            if key in _BOOL_PROPS
            else ("object", isinstance(value, dict))
        )
        if not ok:
            found = "null" if value is None else type(value).__name__
            raise _payload_error(f"Expected type {expected} but found type {found}", key)
        limit = _MAX_LENGTH.get(key)
        if limit is not None and len(value) > limit:
            raise _payload_error(f"String is too long ({len(value)} chars), maximum {limit}", key)
    return body


def create_user(state: StandinState, config: StandinConfig, raw: bytes) -> dict[str, Any]:
    """Store the user `raw` describes and return it as Auth0 would; else raise `ApiError`."""
    body = _check_body(raw)
    connection = body.get("connection")
    if connection is None:
        raise _payload_error("Missing required property: connection")
    if connection not in config.connections:
        raise ApiError(400, "The connection does not exist.", "inexistent_connection")
    for required in ("email", "password"):
        if required not in body:
            raise _payload_error(f"Missing required property: {required}")
    email: str = body["email"]
    password: str = body["password"]
    if not _EMAIL.match(email):
        raise _payload_error(f"Object didn't pass validation for format email: {email}", "email")
    email = email.lower()
    if (connection, email) in state.by_email:
        raise ApiError(409, "The user already exists.", "auth0_idp_error")
    username = body.get("username")
    if username is not None and (connection, username.lower()) in state.by_username:
        raise ApiError(400, "The username provided is in use already.", "auth0_idp_error")
    check_password(config, password, email, body)

    now = _iso_now()
    hex_id = secrets.token_hex(12)
    local = email.split("@", 1)[0]
    digest = hashlib.sha256(email.encode()).hexdigest()
    user: dict[str, Any] = {
        "user_id": f"auth0|{hex_id}",
        "email": email,
        "email_verified": body.get("email_verified", False),
    }
    for key in ("given_name", "family_name", "username", "phone_number", "blocked"):
        if key in body:
            user[key] = body[key]
    user.update(
        {
            "name": body.get("name", email),
            "nickname": body.get("nickname", local),
            "picture": body.get(
                "picture",
                f"https://s.gravatar.com/avatar/{digest}?s=480&r=pg&d=identicon",
            ),
            "created_at": now,
            "updated_at": now,
            "identities": [
                {
                    "connection": connection,
                    "user_id": hex_id,
                    "provider": "auth0",
                    "isSocial": False,
                }
            ],
            "user_metadata": body.get("user_metadata", {}),
            "app_metadata": body.get("app_metadata", {}),
        }
    )
    state.users[user["user_id"]] = user
    state.by_email[(connection, email)] = user["user_id"]
    salt = secrets.token_bytes(16)
    state.passwords[user["user_id"]] = (salt, password_digest(salt, password))
    if username is not None:
        state.by_username[(connection, username.lower())] = user["user_id"]
    return user
