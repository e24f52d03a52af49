"""Field errors in the request's language, translated by their stable `code`.

The service layer and the validation write their messages in English (the code's own
language). At the edge each error's message is looked up by its code in the request's
catalogue (`msgctxt` = the code, `msgid` = the English below), and replaced only when
the catalogue has words for it: a code without a translation keeps its English message,
which may say more (the `N` of a limit, the alphabets that were mixed). Codes of the
same kind share an entry: `given_name.link` and `family_name.link` are `name.link`,
`fields.<name>.<problem>` is `field.<problem>`, `consents.<id>.<problem>` is
`consent.<problem>`.
"""

from __future__ import annotations

import gettext
from typing import Any

# code (or the shared code of its kind) -> the English the catalogues translate.
ERROR_TEXT: dict[str, str] = {
    "body.malformed": "Send a JSON object with email and password.",
    "body.refused_by_provider": "The identity provider did not accept this sign-up.",
    "field.unknown": "Unknown field: remove it.",
    "email.required": "Enter your e-mail address.",
    "email.not_text": "Must be text.",
    "email.invalid": "Enter a valid e-mail address, like name@example.com.",
    "email.too_long": "This e-mail address is too long.",
    "email.non_ascii_local_part": "We can't deliver e-mail to an address with accented or "
    "non-Latin letters before the @-sign. Use an address with only a-z, digits and . _ + - "
    "before the @-sign.",
    "email.mixed_scripts": "This address mixes letters of different alphabets, so it can pass "
    "for another address. Type it again with your keyboard's usual letters.",
    "email.look_alike": "The part after the @-sign is written in letters that look like Latin "
    "ones, so it can pass for another address. Check it and type it again.",
    "email.registered": "This e-mail address is already registered.",
    "email.refused_by_provider": "The identity provider did not accept this e-mail address.",
    "password.required": "Choose a password.",
    "password.not_text": "Must be text.",
    "password.too_short": "Use at least 8 characters.",
    "password.too_long": "Use at most 128 characters.",
    "password.repeated_character": "Don't repeat one character: choose a few unrelated words "
    "instead.",
    "password.is_email": "Don't use your e-mail address as your password.",
    "password.is_site_name": "Don't use the site's name as your password.",
    "password.too_common": "This password is too common and easy to guess: choose a longer, "
    "less usual one.",
    "password.too_weak": "This password is too weak: choose a longer one.",
    "password.contains_user_info": "Don't use your name or e-mail address in your password.",
    "password.used_before": "You used this password before: choose a new one.",
    "password.refused_by_provider": "The identity provider did not accept this password.",
    "name.not_text": "Must be text.",
    "name.too_long": "Use at most 100 characters.",
    "name.invisible_characters": "Remove the control or invisible characters.",
    "name.encoded_text": "Type your name as it is written.",
    "name.address": "A name has no @, < or >.",
    "name.link": "A name has no links or web addresses.",
    "name.refused_by_provider": "The identity provider did not accept this name.",
    "username.taken": "This username is already taken.",
    "idempotency_key.too_long": "The Idempotency-Key has at most 255 characters.",
    "idempotency_key.reused": "Use a new key for a different request.",
    "field.required": "This field is required.",
    "field.not_text": "Must be text.",
    "field.too_long": "This is too long.",
    "field.too_short": "This is too short.",
    "field.invalid": "This value is not valid.",
    "field.refused": "This value was not accepted.",
    "field.not_an_option": "Choose one of the options.",
    "field.not_boolean": "Answer with yes or no.",
    "field.pattern_mismatch": "This is not in the expected form.",
    "field.not_a_date": "Enter a date.",
    "fields.not_an_object": "Send the fields as a JSON object.",
    "consent.required": "Please accept this to create your account.",
    "consent.not_boolean": "Answer with yes or no.",
    "consents.not_an_object": "Send the consents as a JSON object.",
    "email.domain_refused": "We can't accept addresses of this mail domain. Use another address.",
    "password.breached": "This password has appeared in a data breach: choose another one.",
    "challenge.missing": "Your browser's check is missing. Reload the page and try again.",
    "challenge.invalid": "Your browser's check did not pass. Reload the page and try again.",
    "challenge.expired": "Your browser's check has expired. Reload the page and try again.",
    "challenge.used": "Your browser's check was used already. Reload the page and try again.",
    "challenge.not_text": "Must be text.",
    "challenge.too_long": "This is too long.",
}
_NAME_FIELDS = ("given_name", "family_name")
# The `detail` of the problems a person may read on the page, translated as they are.
PROBLEM_DETAILS = (
    "Some fields need attention.",
    "The body is not valid JSON.",
    "An account with this e-mail address already exists. Sign in instead, or reset your password.",
    "The identity provider refused a field.",
    "This Idempotency-Key was used with a different request.",
)


def shared_code(code: str) -> str:
    """The entry a code is translated by: its own, or its kind's."""
    if code in ERROR_TEXT:
        return code
    head, _, problem = code.rpartition(".")
    if head in _NAME_FIELDS:
        return f"name.{problem}"
    if head.startswith("fields.") or head in ("field", "fields"):
        return f"field.{problem}"
    if head.startswith("consents.") or head == "consents":
        return f"consent.{problem}"
    return code


def localised(message: str, code: str, translations: gettext.NullTranslations) -> str:
    """`message` in the catalogue's language when it has words for `code`; else as it is."""
    key = shared_code(code)
    english = ERROR_TEXT.get(key)
    if english is None:
        return message
    words = translations.pgettext(key, english)
    return message if words == english else words


def localise_errors(
    errors: list[dict[str, Any]], translations: gettext.NullTranslations
) -> list[dict[str, Any]]:
    """The field errors with their messages in the catalogue's language."""
    return [
        {**error, "message": localised(str(error["message"]), str(error["code"]), translations)}
        if "code" in error and "message" in error
        else error
        for error in errors
    ]
