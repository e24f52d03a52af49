"""Which language a request is answered in: `?lang=` first, then `Accept-Language`.

One choice for everything a person sees (the page, the field errors, the consent text
recorded, the welcome e-mail): English and German ship; a site adds more (a catalogue
in its brand folder, labels in its form definition), and passes them as `available`.
Babel's `negotiate_locale` matches a preference to what is available (`de-AT` finds
`de`); parsing the header and its q-values is done here, bounded, since the header is
the client's to make as long as it likes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from babel.core import negotiate_locale

SHIPPED = ("en", "de")
DEFAULT = "en"
# A browser sends a handful; anything past these is ignored, never parsed.
MAX_HEADER = 512
MAX_PREFERENCES = 16


def accepted_languages(header: str | None) -> list[str]:
    """The languages of an `Accept-Language` header, most wanted first; q=0 left out."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header[:MAX_HEADER].split(",")[:MAX_PREFERENCES]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip().replace("_", "-")
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


class Languages:
    """The languages a site offers, and the choice of one for a request."""

    def __init__(self, available: Iterable[str] = SHIPPED, default: str = DEFAULT) -> None:
        self.available = tuple(dict.fromkeys(code.lower() for code in available))
        if default.lower() not in self.available:
            self.available = (default.lower(), *self.available)
        self.default = default.lower()

    def choose(self, lang: str | None = None, accept_language: str | None = None) -> str:
        """`lang` if offered (`?lang=de`), else the header's best offered match, else the
        default."""
        preferred = [lang] if lang and len(lang) <= 35 else []
        preferred += accepted_languages(accept_language)
        found = negotiate_locale(preferred, self.available, sep="-", aliases={})
        if found is None:
            return self.default
        # Babel answers in the spelling of the preference (`DE`): give ours.
        found = found.lower()
        return found if found in self.available else self.default

    def for_request(self, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
        """The choice for a request, from its query parameters and headers."""
        return self.choose(query.get("lang"), headers.get("accept-language"))
