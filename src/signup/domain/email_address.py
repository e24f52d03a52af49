"""The e-mail address an account is keyed by: one spelling per mailbox, and only ones we
can write to.

- Auth0 lower-cases addresses, so `Ada@Example.com` and `ada@example.com` are one account
  there. The whole address is lower-cased here too, so the answer, the `user.new` event
  and both identity providers agree on one spelling (the local store also compares
  case-insensitively, for rows written before this rule).
- The part before the @-sign must be ASCII: the welcome e-mail goes out without
  SMTPUTF8, so an account at `josé@…` could never be written to. Domains may be
  internationalised (they go out as punycode).
- Look-alikes are refused (Unicode TR39): a domain label that mixes scripts
  (`exаmple` with a Cyrillic `а`) or, beside Latin labels, is written wholly in another
  script's letters that pass for Latin ones (`ѕсоор.com`). A label in one non-Latin
  script (`пример.рф`, `пример.com`, `日本語.jp`) is accepted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL = 254
MAX_LOCAL = 64
KEPT_DOMAINS = 1024

# RFC 5322 dot-atom: the only local part every mail server takes without quoting.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_IGNORED_SCRIPTS = frozenset({"COMMON", "INHERITED"})
# TR39's "highly restrictive" profile: Latin may mix with these East Asian sets only.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_EXAMPLE = "like ada@example.com"


class EmailRefused(ValueError):
    """The address cannot key an account; the message says why, for the person, and
    `code` names the problem stably (`email.invalid`, `email.too_long`, ...)."""

    def __init__(self, message: str, code: str = "email.invalid") -> None:
        super().__init__(message)
        self.code = code


def normalise_email(value: str) -> str:
    """The one spelling of `value` that keys an account, or `EmailRefused`.

    Trimmed, lower-cased, the domain IDNA-normalised (full-width, NFD and punycode forms
    give the same domain, shown in Unicode).
    """
    value = value.strip()
    if not value:
        raise EmailRefused("Enter your e-mail address.", "email.required")
    if len(value) > MAX_EMAIL:
        raise EmailRefused(
            f"An e-mail address has at most {MAX_EMAIL} characters.", "email.too_long"
        )
    local, _, domain = value.rpartition("@")
    if not _LOCAL.match(local):
        _refuse_local_part(value, local)
    if len(local) > MAX_LOCAL:
        raise EmailRefused(
            f"The part before the @-sign has at most {MAX_LOCAL} characters.", "email.too_long"
        )
    # An ASCII domain's case never changes the answer: one cache entry for all its spellings.
    shown, ascii_domain = checked_domain(domain.lower() if domain.isascii() else domain)
    if len(local) + 1 + len(ascii_domain) > MAX_EMAIL:
        raise EmailRefused(
            f"An e-mail address has at most {MAX_EMAIL} characters.", "email.too_long"
        )
    return f"{local.lower()}@{shown}"


@functools.lru_cache(maxsize=KEPT_DOMAINS)
def checked_domain(domain: str) -> tuple[str, str]:
    """The domain as shown (Unicode, lower case) and as sent (ASCII), or `EmailRefused`.

    email_validator's IDNA 2008 check is most of the cost of an address and depends on the
    domain alone; sign-ups come from few domains, so the answer is kept per domain. Only
    accepted domains are kept (lru_cache keeps no exception). Only email_validator's
    public API is used: a fixed one-letter local part carries the domain through it.
    """
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        raise EmailRefused(f"Enter a valid e-mail address, {_EXAMPLE} ({exc}).") from None
    shown, ascii_domain = checked.domain.lower(), checked.ascii_domain
    if not shown.isascii():
        _refuse_look_alikes(shown)
    return shown, ascii_domain


def _refuse_local_part(value: str, local: str) -> None:
    """Raise the most helpful refusal for a local part that is not a plain dot-atom."""
    if local and not local.isascii():
        scripts = _scripts(local)
        if len(scripts) > 1:
            raise EmailRefused(
                "The part before the @-sign mixes letters of different alphabets "
                f"({_names(scripts)}), so it can pass for another address. Type it again "
                "with your keyboard's usual letters.",
                "email.mixed_scripts",
            )
        raise EmailRefused(
            "We can't deliver e-mail to an address with accented or non-Latin letters before "
            "the @-sign. Use an address with only a-z, digits and . _ + - before the @-sign.",
            "email.non_ascii_local_part",
        )
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise EmailRefused(f"Enter a valid e-mail address, {_EXAMPLE} ({exc}).") from None
    raise EmailRefused(f"Enter a valid e-mail address, {_EXAMPLE}.")


def _refuse_look_alikes(domain: str) -> None:
    labels = [(label, _scripts(label)) for label in domain.split(".")]
    for _, scripts in labels:
        if len(scripts) > 1 and not any(scripts <= mix for mix in _ALLOWED_MIXES):
            raise EmailRefused(
                "The part after the @-sign mixes letters of different alphabets "
                f"({_names(scripts)}), so it can pass for another address. Check it and type "
                "it again.",
                "email.mixed_scripts",
            )
    if not any("LATIN" in scripts for _, scripts in labels):
        return  # e.g. пример.рф: nothing Latin for it to pass for
    for label, scripts in labels:
        if scripts and "LATIN" not in scripts and _passes_for_ascii(label):
            raise EmailRefused(
                f"The part after the @-sign is written in {_names(scripts)} letters that look "
                "like Latin ones, so it can pass for another address. Check it and type it "
                "again.",
                "email.look_alike",
            )


def _scripts(text: str) -> frozenset[str]:
    script = _script_of()
    return frozenset(script(ch) for ch in text) - _IGNORED_SCRIPTS


def _passes_for_ascii(label: str) -> bool:
    """TR39 whole-script confusable: every letter has an ASCII look-alike (`ѕсоор`)."""
    look_alikes = _ascii_look_alikes()
    script = _script_of()
    letters = [ch for ch in label if script(ch) not in _IGNORED_SCRIPTS]
    return bool(letters) and all(ch in look_alikes for ch in letters)


def _names(scripts: Iterable[str]) -> str:
    return " and ".join(sorted(s.replace("_", " ").title() for s in scripts))


# confusable_homoglyphs loads its Unicode tables (~1 MB of JSON, ~15 MB in memory) on
# import; only non-ASCII addresses need them, so processes that never see one never pay.
@functools.cache
def _script_of() -> Callable[[str], str]:
    from confusable_homoglyphs import categories

    alias: Callable[[str], str] = categories.alias
    return alias


@functools.cache
def _ascii_look_alikes() -> frozenset[str]:
    from confusable_homoglyphs import confusables

    table: dict[str, list[dict[str, Any]]] = confusables.confusables_data
    return frozenset(
        ch
        for ch, glyphs in table.items()
        if not ch.isascii() and any(_is_ascii_alnum(g["c"]) for g in glyphs)
    )


def _is_ascii_alnum(text: str) -> bool:
    return text.isascii() and text.isalnum()
