"""What a person's name may be: the one rule the sign-up form and the welcome e-mail share.

A name is free text typed by someone whose address nobody has verified yet, and the
welcome e-mail repeats it to that address. So a name must not be able to become
structure anywhere it travels (an RFC 2047 encoded-word is decoded by mail libraries
into whatever bytes it carries, CR LF included), nor carry somewhere to go (a link, a
domain name, an e-mail address), which would turn the sign-up form into a way to mail
a stranger a phishing link from our own server.

`name_problem` is the rule: the web schema refuses such names with a 422, and the
welcome-e-mail consumer applies it again to every event, because events written before
the rule existed are still in the outbox and the queues. `greeting_from` is stricter,
because it decides what we echo to an unverified address: a short run of letters only.
"""

from __future__ import annotations

import re
import unicodedata

# Control, format (zero-width, bidi overrides), surrogates, private use, and the two
# Unicode line breaks that `str.splitlines` and some mail code treat as newlines.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})

# Full stops that browsers and mail clients accept between the labels of a domain name
# and that NFKC leaves alone.
_LABEL_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

_ENCODED_WORD = re.compile(r"=\?|\?=")
# A scheme is matched from its first character only (the lookbehind), which keeps a long
# name from being scanned once per character.
_SCHEME = re.compile(
    r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:\s*/|(?<![a-z0-9])"
    r"(?:https?|ftp|file|mailto|tel|sms|callto|skype|javascript|data|www)\s*:"
    # A link with its scheme cut off (`://…`) is still one to a mail reader.
    r"|:\s*//"
)
# `label.tld`: the end of a label, a dot right after it, then 2+ letters (or an IDNA
# `xn--` label). Only the label's last character is matched: matching the whole label
# backtracks, some twenty times slower on a long name.
# "St. John" and "J. R. R." pass; "Mary.Ann" does not (the message says what to do).
_DOMAIN = re.compile(
    r"[^\W_]\.(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)(?![\w-])"
    r"|\bwww\d*\."
    r"|\d{1,3}(?:\.\d{1,3}){3}"
)

# What a greeting may echo: letters and their marks, spaces, apostrophes, hyphens.
_GREETING_PUNCTUATION = frozenset("'\u2019\u02bc-\u2010\u2011.")
MAX_GREETING_CHARACTERS = 40
MAX_GREETING_WORDS = 3

INVISIBLE_MESSAGE = "Remove control or invisible characters from the name."
ENCODED_MESSAGE = "Remove the encoded text (=?…?=) from the name."
ADDRESS_MESSAGE = "A name cannot contain an e-mail address or the characters @, < and >."
LINK_MESSAGE = (
    "A name cannot contain a link or a web address (like example.com); "
    "if it has a full stop, put a space after it."
)


def _folded(value: str) -> str:
    """`value` as a link detector should see it: compatibility forms and case folded.

    Fullwidth `ｈｔｔｐｓ：／／`, `＠`, `＝？` and the ideographic full stops all become
    their ASCII selves here, so the look-alikes are refused with the originals.
    """
    return unicodedata.normalize("NFKC", value).translate(_LABEL_DOTS).casefold()


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a person's name, as a message for that field; None if it can.

    Refused: control and invisible characters, RFC 2047 encoded-words (`=?` or `?=`),
    `@`, `<`, `>`, URL schemes, `www.`, anything shaped like a domain name or an IPv4
    address. Length is the caller's business.
    """
    refusal = name_refusal(value)
    return None if refusal is None else refusal[1]


def name_refusal(value: str) -> tuple[str, str] | None:
    """`name_problem`'s answer with its stable kind first (`invisible_characters`,
    `encoded_text`, `address`, `link`): the field's code is `<field>.<kind>`."""
    # `isprintable` (in C) is False for every category refused here, and for spaces
    # other than U+0020, which are allowed: only then is each character looked at.
    if not value.isprintable() and any(unicodedata.category(ch) in _INVISIBLE for ch in value):
        return "invisible_characters", INVISIBLE_MESSAGE
    folded = _folded(value)
    if _ENCODED_WORD.search(folded):
        return "encoded_text", ENCODED_MESSAGE
    if "@" in folded or "<" in folded or ">" in folded:
        return "address", ADDRESS_MESSAGE
    if _SCHEME.search(folded) or _DOMAIN.search(folded):
        return "link", LINK_MESSAGE
    return None


def _greetable(ch: str) -> bool:
    return ch == " " or ch in _GREETING_PUNCTUATION or unicodedata.category(ch)[0] in "LM"


def greeting_from(*candidates: str | None) -> str | None:
    """The first candidate fit to greet an unverified address with, spaces collapsed.

    Fit: a safe name (`name_problem`) of at most 3 words and 40 characters, made only of
    letters, combining marks, spaces, apostrophes, hyphens and full stops: nothing a
    reader could follow, call or reply to. None when no candidate is fit.
    """
    for candidate in candidates:
        value = unicodedata.normalize("NFC", candidate or "")
        # Judged before collapsing spaces, which would hide a U+2028 or a tab.
        if name_problem(value) is not None:
            continue
        cleaned = " ".join(value.split())
        if (
            cleaned
            and len(cleaned) <= MAX_GREETING_CHARACTERS
            and len(cleaned.split(" ")) <= MAX_GREETING_WORDS
            and any(unicodedata.category(ch)[0] == "L" for ch in cleaned)
            and all(_greetable(ch) for ch in cleaned)
        ):
            return cleaned
    return None
