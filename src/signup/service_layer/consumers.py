"""Use cases of the two `user.new` consumers: the welcome e-mail and the CRM sync.

Each takes the parsed `UserRegistered` event and its port, does one side effect, and
raises `PermanentFailure` (park the message) or `TransientFailure` (retry it later).
Deduplication, retries and acknowledgements are the worker runtime's business
(`signup.adapters.consumer`); these functions only know what to do for one event.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from signup.adapters.crm import Crm
from signup.adapters.failures import PermanentFailure
from signup.adapters.mailer import Mailer
from signup.domain.events import UserRegistered, iso_millis

WELCOME_EMAIL = "welcome-email"
CRM_SYNC = "crm-sync"
CONSUMERS = (WELCOME_EMAIL, CRM_SYNC)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")


@dataclass(frozen=True)
class Brand:
    """What the welcome e-mail says about us (from settings)."""

    site_name: str
    site_url: str
    mail_from: str


@cache
def _templates() -> Environment:
    # Built on first use, not at import. Autoescaping is on for `*.html.j2` only:
    # the text part and the subject are plain text, never rendered as HTML.
    return Environment(
        loader=PackageLoader("signup", "templates/email"),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def greeting_name(event: UserRegistered) -> str:
    """Given name, else the full name (unless it is just the e-mail), else "there"."""
    data = event.data
    for candidate in (data.given_name, data.name):
        cleaned = " ".join((candidate or "").split())
        if cleaned and "@" not in cleaned:
            return cleaned
    return "there"


def message_id(event_id: str) -> str:
    """`<event-id@signup>`: a duplicate send carries the same Message-ID."""
    local = event_id if _SAFE_ID.match(event_id) else hashlib.sha256(event_id.encode()).hexdigest()
    return f"<{local}@signup>"


def compose_welcome(event: UserRegistered, brand: Brand) -> EmailMessage:
    """The welcome e-mail (text and HTML alternatives); everything from the event is escaped.

    Raises `PermanentFailure` when the event's address cannot be put in a header.
    """
    data = event.data
    context: dict[str, Any] = {
        "greeting": greeting_name(event),
        "email": data.email,
        "name": data.name,
        "site_name": brand.site_name,
        "site_url": brand.site_url,
    }
    env = _templates()
    subject = " ".join(env.get_template("welcome.subject.j2").render(context).split())
    text = env.get_template("welcome.txt.j2").render(context)
    html = env.get_template("welcome.html.j2").render(context)

    message = EmailMessage()
    try:
        display = " ".join(data.name.split()) if "@" not in data.name else ""
        message["To"] = Address(display_name=display, addr_spec=data.email)
        message["From"] = brand.mail_from
        message["Subject"] = subject
    except (ValueError, IndexError, TypeError) as exc:
        raise PermanentFailure(f"cannot address the e-mail: {exc}") from exc
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(event.id)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


async def send_welcome_email(event: UserRegistered, *, mailer: Mailer, brand: Brand) -> None:
    """Welcome the new user by e-mail."""
    await mailer.send(compose_welcome(event, brand))


def contact_of(event: UserRegistered) -> dict[str, Any]:
    """The CRM's contact document."""
    data = event.data
    return {
        "user_id": data.user_id,
        "email": data.email,
        "given_name": data.given_name,
        "family_name": data.family_name,
        "name": data.name,
        "created_at": iso_millis(data.created_at),
        "source": event.source,
    }


async def sync_contact(event: UserRegistered, *, crm: Crm) -> None:
    """Create or update the user's contact in the CRM (idempotency key: the event id)."""
    await crm.push_contact(event.id, contact_of(event))
