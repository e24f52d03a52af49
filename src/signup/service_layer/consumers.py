"""Use cases of the two `user.new` consumers: the welcome e-mail and the CRM sync.

Each takes the parsed `UserRegistered` event and its port, does one side effect, and
raises `PermanentFailure` (park the message) or `TransientFailure` (retry it later).
Deduplication, retries and acknowledgements are the worker runtime's business
(`signup.adapters.consumer`); these functions only know what to do for one event.
"""

from __future__ import annotations

import gettext
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import MessageError
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from signup.domain.events import ConsumedEvent, SignupAttempted, UserRegistered, iso_millis
from signup.domain.names import greeting_from
from signup.service_layer.failures import PermanentFailure
from signup.service_layer.ports import Crm, Mailer
from signup.service_layer.verification import VerificationLinks

WELCOME_EMAIL = "welcome-email"
CRM_SYNC = "crm-sync"
CONSUMERS = (WELCOME_EMAIL, CRM_SYNC)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")

# The headers of the welcome e-mail, each once, and nothing else on the wire.
WELCOME_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "mime-version",
        "content-type",
    }
)
# One plain addr-spec: no space, control character, quote, comment, route, list or
# encoded-word (email_validator lets `=?` through as atext, and Python's address
# parser decodes it). Non-ASCII letters stay allowed (SMTPUTF8 addresses).
_ADDRESS = re.compile(r"^[^\s@<>()\[\]\\,;:\"]{1,64}@[^\s@<>()\[\]\\,;:\"]{1,253}$")
# How aiosmtplib writes a message: SMTP, or SMTPUTF8 when an address is not ASCII.
_WIRE_POLICIES = (policy.SMTP, policy.SMTPUTF8)
# CRLF lines, and any re-parse of the message by its own policy raises on a defect.
_COMPOSE_POLICY = policy.SMTP.clone(raise_on_defect=True)


@dataclass(frozen=True)
class Brand:
    """What the welcome e-mail says about us (from settings)."""

    site_name: str
    site_url: str
    mail_from: str
    # Local accounts' verification links (None: no link; Auth0 sends its own e-mail).
    verification: VerificationLinks | None = None
    # The catalogues: a language's translations (None: English only).
    translations: Callable[[str], gettext.NullTranslations] | None = None
    # The languages the catalogues have: an event in another is written in English.
    languages: tuple[str, ...] = ("en",)

    def language_for(self, event: UserRegistered | SignupAttempted) -> str:
        """The event's language if there are words for it, else English."""
        wanted = (event.data.language or "en").lower()
        if wanted in self.languages:
            return wanted
        base = wanted.split("-", 1)[0]
        return base if base in self.languages else "en"

    # Where the owner of an address someone tried to sign up with signs in or resets the
    # password (SIGNUP_SIGN_IN_URL; None: the site's own address).
    sign_in_url: str | None = None


def _templates(translations: gettext.NullTranslations | None = None) -> Environment:
    # Built on first use, not at import, once per catalogue. Autoescaping is on for
    # `*.html.j2` only: the text part and the subject are plain text, never HTML.
    chain = translations or _ENGLISH
    env = _ENVIRONMENTS.get(id(chain))
    if env is None:
        env = Environment(
            loader=PackageLoader("signup", "templates/email"),
            autoescape=select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            extensions=["jinja2.ext.i18n"],
        )
        env.install_gettext_translations(chain, newstyle=True)  # type: ignore[attr-defined]
        _ENVIRONMENTS[id(chain)] = env
    return env


_ENGLISH = gettext.NullTranslations()
# By the catalogue's identity: the catalogues live as long as the worker.
_ENVIRONMENTS: dict[int, Environment] = {}


def greeting_name(event: UserRegistered) -> str:
    """Given name, else the full name, if fit to echo to an unverified address; else "there".

    Fit is `signup.domain.names.greeting_from`: checked here again because events
    written before sign-up refused such names may still be in the outbox or a queue.
    """
    data = event.data
    return greeting_from(data.given_name, data.name) or "there"


def message_id(event_id: str) -> str:
    """`<event-id@signup>`: a duplicate send carries the same Message-ID."""
    local = event_id if _SAFE_ID.match(event_id) else hashlib.sha256(event_id.encode()).hexdigest()
    return f"<{local}@signup>"


def verify_url(event: UserRegistered, brand: Brand, language: str | None = None) -> str | None:
    """The link that verifies the new account's address: local, unverified accounts only;
    `language`: the page it opens speaks it (`&lang=`)."""
    data = event.data
    if brand.verification is None or data.identity_provider != "local" or data.email_verified:
        return None
    return brand.verification.link_for(data.user_id, None if language == "en" else language)


def recipient_of(event: UserRegistered | SignupAttempted) -> str:
    """The event's address, if it is one plain addr-spec; else `PermanentFailure`."""
    email = event.data.email
    if not _ADDRESS.match(email) or "=?" in email or "?=" in email or not email.isprintable():
        raise PermanentFailure("cannot address the e-mail: not one plain address")
    return email


def _header(message: EmailMessage, name: str, value: str | Address) -> None:
    message[name] = value
    defects = message[name].defects
    if defects:
        raise PermanentFailure(f"cannot write the {name} header: {defects[0]!r}")


def check_wire_form(message: EmailMessage, recipient: str) -> None:
    """Refuse to send `message` unless its bytes carry exactly the headers we wrote.

    The header parser of this Python (3.11) decodes encoded-words and may fold what
    they carry into the output unquoted (CVE-2024-6923), and aiosmtplib flattens with
    its own policy and takes its recipients from the headers. So the message is
    written here as aiosmtplib would write it and read back line by line: every header
    is one we set, each once, with no bare CR or LF, and To names one address.
    """
    for wire_policy in _WIRE_POLICIES:
        buffer = io.BytesIO()
        try:
            BytesGenerator(buffer, policy=wire_policy).flatten(message)
        except (ValueError, TypeError, MessageError) as exc:
            # Python 3.12.5+ refuses such headers itself (HeaderWriteError).
            raise PermanentFailure(f"cannot write the e-mail: {exc}") from exc
        head, separator, _ = buffer.getvalue().partition(b"\r\n\r\n")
        if not separator:
            raise PermanentFailure("the e-mail has no header section")
        names: list[str] = []
        for line in head.split(b"\r\n"):
            if b"\r" in line or b"\n" in line:
                raise PermanentFailure("a header of the e-mail carries a bare line break")
            if line[:1] in (b" ", b"\t"):
                continue  # a folded continuation of the header above
            name, colon, _ = line.partition(b":")
            if not colon:
                raise PermanentFailure("a line of the e-mail's header is not a header")
            names.append(name.decode("ascii", "replace").lower())
        if sorted(names) != sorted(WELCOME_HEADERS):
            raise PermanentFailure(f"the e-mail's headers are not the ones written: {names}")
    addresses = getaddresses(message.get_all("To", []))
    if [address for _, address in addresses] != [recipient]:
        raise PermanentFailure("the e-mail's To header is not the one recipient")


def compose_welcome(event: UserRegistered, brand: Brand) -> EmailMessage:
    """The welcome e-mail (text and HTML alternatives); everything from the event is escaped.

    No name goes into a header: To is the bare address, and the subject is the brand's.
    The body greets by name only when `greeting_name` finds the name fit. Raises
    `PermanentFailure` when the event's address cannot be put in a header.
    """
    recipient = recipient_of(event)
    language = brand.language_for(event)
    translations = brand.translations(language) if brand.translations else None
    brand_context: dict[str, Any] = {
        "site_name": brand.site_name,
        "site_url": brand.site_url,
        "lang": language,
    }
    greeting = greeting_from(event.data.given_name, event.data.name)
    context: dict[str, Any] = {
        **brand_context,
        # None: no name fit to repeat; the template says "Hi there" in its language.
        "greeting": greeting,
        "email": recipient,
        "verify_url": verify_url(event, brand, language),
    }
    env = _templates(translations)
    subject = " ".join(env.get_template("welcome.subject.j2").render(brand_context).split())
    text = env.get_template("welcome.txt.j2").render(context)
    html = env.get_template("welcome.html.j2").render(context)

    return _addressed(recipient, subject, text, html, event.id, brand)


def _addressed(
    recipient: str, subject: str, text: str, html: str, event_id: str, brand: Brand
) -> EmailMessage:
    message = EmailMessage(policy=_COMPOSE_POLICY)
    try:
        _header(message, "To", Address(addr_spec=recipient))
        _header(message, "From", brand.mail_from)
        _header(message, "Subject", subject)
    except (ValueError, IndexError, TypeError) as exc:
        raise PermanentFailure(f"cannot address the e-mail: {exc}") from exc
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(event_id)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    check_wire_form(message, recipient)
    return message


def compose_attempt_notice(event: SignupAttempted, brand: Brand) -> EmailMessage:
    """ "Someone tried to create an account with your address": to the address's owner.

    Everything in it is ours: the site's name, its sign-in address, the owner's own
    address and when. Nothing that the person who typed the form chose (no name, no
    link) can reach it: the event carries nothing of the attempt but its time.
    """
    recipient = recipient_of(event)
    # The attempt's language (the page's, one of the site's); without one, English.
    language = brand.language_for(event)
    translations = brand.translations(language) if brand.translations else None
    context: dict[str, Any] = {
        "lang": language,
        "site_name": brand.site_name,
        "sign_in_url": brand.sign_in_url or brand.site_url,
        "email": recipient,
        "attempted_at": event.data.attempted_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    env = _templates(translations)
    subject = " ".join(env.get_template("attempt.subject.j2").render(context).split())
    text = env.get_template("attempt.txt.j2").render(context)
    html = env.get_template("attempt.html.j2").render(context)
    return _addressed(recipient, subject, text, html, event.id, brand)


async def send_welcome_email(event: ConsumedEvent, *, mailer: Mailer, brand: Brand) -> None:
    """Welcome the new user by e-mail; or tell an address's owner that someone tried to
    sign up with it (`user.signup_attempted`)."""
    if isinstance(event, SignupAttempted):
        await mailer.send(compose_attempt_notice(event, brand))
        return
    await mailer.send(compose_welcome(event, brand))


def contact_of(event: UserRegistered) -> dict[str, Any]:
    """The CRM's contact document.

    With a site's form: its declared fields, and the marketing consents, given or not, so
    that a CRM never mails someone who did not opt in (the terms and other required
    consents are not the CRM's business; the welcome e-mail is not marketing).
    """
    data = event.data
    contact: dict[str, Any] = {
        "user_id": data.user_id,
        "email": data.email,
        "given_name": data.given_name,
        "family_name": data.family_name,
        "name": data.name,
        "created_at": iso_millis(data.created_at),
        "source": event.source,
    }
    if data.fields is not None:
        contact["fields"] = dict(data.fields)
    if data.consents is not None:
        contact["consents"] = [
            consent.model_dump(exclude={"marketing"})
            for consent in data.consents
            if consent.marketing
        ]
    return contact


async def sync_contact(event: ConsumedEvent, *, crm: Crm) -> None:
    """Create or update the user's contact in the CRM (idempotency key: the event id).

    Only `user.new` is the CRM's business (its queue is bound with that key alone).
    """
    if isinstance(event, UserRegistered):
        await crm.push_contact(event.id, contact_of(event))
