"""Mail-injection payloads and an independent reading of a message's raw bytes.

Shared by the unit, integration and e2e tests of issue 16: every way a name could reach
a header of the welcome e-mail (RFC 2047 b and q encoded-words, mixed case, nested,
display names that are address lists) and the spam-relay link. The reading of the wire
form is written here, apart from the application's own check, so the tests do not
trust the code they test.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from worker_fixtures import SmtpSink, free_port


def b_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode()).decode()}?="


def q_word(text: str, charset: str = "utf-8") -> str:
    """Every byte hex-escaped, so the word has no literal `@`, `:` or `<` to catch."""
    return f"=?{charset}?q?{''.join(f'={b:02X}' for b in text.encode())}?="


BCC = "Ada\r\nBcc: evil@attacker.example\r\nReply-To: evil@attacker.example"
SHORT = "\r\nBcc: evil@attacker.example"  # short enough for the 100-character limit
BODY = "\r\nX-Injected: yes\r\n\r\nPHISH https://evil.example/login"
LIST = "x <evil@attacker.example>, y"
SPAM = "Ada. URGENT: verify at https://evil.example/login now"
Q_READABLE = "=?utf-8?q?Ada=0D=0ABcc:_evil@attacker.example?="

# name -> the payload, as an attacker would type it into a name field (each at most
# 100 characters, the form's limit, so a refusal is the name rule's and not the length's).
ATTACKS: dict[str, str] = {
    # The two fields of the report, verbatim.
    "b-given-report": (
        "=?utf-8?b?QWRhDQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ0KUmVwbHktVG86IGV2aWxA"
        "YXR0YWNrZXIuZXhhbXBsZQ==?="
    ),
    "b-family-report": (
        "=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXMNCg0KUEhJU0ggaHR0cHM6Ly9ldmlsLmV4YW1wbGUvbG9naW4=?="
    ),
    "b": b_word(BCC),
    "b-body": b_word(BODY),
    "q": q_word(SHORT),
    "q-readable": Q_READABLE,
    "B-upper": b_word(BCC, "UTF-8").replace("?b?", "?B?"),
    "Q-upper": q_word(SHORT, "UTF-8").replace("?q?", "?Q?"),
    "mixed-case": b_word(SHORT, "uTf-8").replace("?b?", "?B?"),
    "latin1-b": b_word(SHORT, "iso-8859-1"),
    "rfc2231-language": b_word(SHORT).replace("=?utf-8?", "=?utf-8*en?"),
    "mixed-b-and-q": f"{b_word('Ada')} {Q_READABLE}",
    "nested-b-of-q": b_word(Q_READABLE),
    "nested-b-of-b": b_word(b_word(SHORT)),
    "in-the-middle": f"Ada {b_word(SHORT)} Lovelace",
    "list-display-name": LIST,
    "list-display-name-q": q_word(LIST),
    "list-display-name-b": b_word(LIST),
    "line-separator": "Ada\u2028Bcc: evil",
    "fullwidth-encoded-word": "\uff1d\uff1futf-8\uff1fb\uff1fQWRh\uff1f\uff1d",
    "spam-link": SPAM,
    "spam-domain": "Ada, claim your prize at evil.example today",
    "spam-www": "Ada see www.evil",
    "spam-address": "Ada write to evil@attacker.example",
    "spam-fullwidth-link": "Ada \uff48\uff54\uff54\uff50\uff53\uff1a\uff0f\uff0fevil",
    "spam-ideographic-dot": "Ada evil\u3002example",
}
assert all(len(payload) <= 100 for payload in ATTACKS.values())

# The header names the welcome e-mail is written with, each exactly once.
WELCOME_HEADERS = sorted(
    [
        "auto-submitted",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "subject",
        "to",
    ]
)
# Nothing of an attack may show up anywhere in the bytes sent or the decoded parts.
ATTACK_MARKERS = ("attacker", "evil", "injected", "phish", "urgent", "prize")

_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s\"'<>]+")


def wire_header_names(raw: bytes) -> list[str]:
    """The header names of a raw message's top-level section, lower-cased, in order.

    Fails when the section holds a bare CR or LF or a line that is neither a header nor
    a continuation: a receiver could read such a line as a header of the attacker's.
    """
    head, separator, _ = raw.partition(b"\r\n\r\n")
    assert separator, "no end of the header section"
    names: list[str] = []
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line, f"bare line break in {line!r}"
        if line[:1] in (b" ", b"\t"):
            assert names, "a continuation line before any header"
            continue
        assert re.fullmatch(rb"[!-9;-~]+:.*", line, re.S), f"not a header line: {line!r}"
        names.append(line.split(b":", 1)[0].decode().lower())
    return names


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def assert_only_what_we_wrote(
    raw: bytes, recipient: str, *, site_url: str, greeting: str = "there"
) -> None:
    """`raw` is the welcome e-mail to `recipient` alone, with nothing from an attack."""
    assert sorted(wire_header_names(raw)) == WELCOME_HEADERS
    to_lines = [line for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if line[:3] == b"To:"]
    assert to_lines == [f"To: {recipient}".encode()]  # a bare address: no display name
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert [a.addr_spec for a in message["To"].addresses] == [recipient]
    for name in ("Bcc", "Cc", "Reply-To", "X-Injected", "Resent-To", "Sender"):
        assert message[name] is None, name
    # The header section as sent (the body may be base64, so it is read decoded below).
    head = raw.partition(b"\r\n\r\n")[0].lower()
    for marker in ATTACK_MARKERS:
        assert marker.encode() not in head, marker
    text, html = parts(message)
    assert text.startswith(f"Hi {greeting},")
    assert f"Hi {greeting}," in html
    for part in (text, html):
        assert set(_URL.findall(part)) == {site_url}
        assert not any(marker in part.lower() for marker in ATTACK_MARKERS)


@dataclass
class RawSmtpSink(SmtpSink):
    """The worker tests' SMTP sink, also keeping each message's bytes as received."""

    raw: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def raw_smtp() -> Iterator[RawSmtpSink]:
    sink = RawSmtpSink(port=free_port())
    # decode_data off: the bytes exactly as they came over the wire.
    controller = Controller(sink, hostname=sink.host, port=sink.port, decode_data=False)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
