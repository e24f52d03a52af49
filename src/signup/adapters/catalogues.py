"""The translation catalogues: the package's and the site's own (gettext, via Babel).

Shipped as `.po` files (`signup/locale/<lang>/LC_MESSAGES/signup.po`) and compiled in
memory when the process starts (Babel reads and compiles them; no build step, so a
clean checkout with `pip install -e .` has them). A site adds its own wording, or
whole languages, in `SIGNUP_BRAND_DIR/locale/<lang>/LC_MESSAGES/signup.po`: its entries
come first, the package's fill in the rest, and the English text in the code is the
last fallback. Read once at start-up: a catalogue with a mistake stops it.
"""

from __future__ import annotations

import gettext
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po

DOMAIN = "signup"
PACKAGE_LOCALE = Path(__file__).resolve().parents[1] / "locale"
SOURCE_LANGUAGE = "en"
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
_PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|\{n\}")


class CatalogueError(ValueError):
    """A catalogue that cannot be read: the message names the file."""


def _compiled(path: Path) -> gettext.GNUTranslations:
    try:
        with path.open("rb") as source:
            catalog = read_po(source, abort_invalid=True)
    except (OSError, PoFileError, ValueError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    for message in catalog:
        if not message.id or not message.string or not isinstance(message.string, str):
            continue
        extra = set(_PLACEHOLDER.findall(message.string)) - set(
            _PLACEHOLDER.findall(str(message.id))
        )
        if extra:
            # Filled in from what the code gives for the English: any other fails later.
            raise CatalogueError(
                f"{path}:{message.lineno}: the translation of {message.id!r} uses "
                f"{', '.join(sorted(extra))}, which the original does not have"
            )
    buffer = io.BytesIO()
    # Fuzzy entries are a translator's guess: left out, as msgfmt leaves them out.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def _catalogues_in(root: Path) -> dict[str, Path]:
    """`<lang>` -> `<root>/<lang>/LC_MESSAGES/signup.po`, for each one there."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        path = folder / "LC_MESSAGES" / f"{DOMAIN}.po"
        language = folder.name.lower().replace("_", "-")
        if path.is_file():
            if not _LANGUAGE.match(language):
                raise CatalogueError(f"{path}: {folder.name!r} is not a language code")
            found[language] = path
    return found


@dataclass
class Catalogues:
    """The translations of each language offered: the site's, over the package's, over
    the English of the code."""

    by_language: dict[str, gettext.NullTranslations] = field(default_factory=dict)

    @property
    def languages(self) -> tuple[str, ...]:
        """English first, then every language a catalogue was found for."""
        return (SOURCE_LANGUAGE, *sorted(set(self.by_language) - {SOURCE_LANGUAGE}))

    def translations(self, language: str) -> gettext.NullTranslations:
        """The chain for `language` (an unknown one: the English of the code)."""
        return self.by_language.get(language.lower()) or gettext.NullTranslations()

    @classmethod
    def load(cls, brand_dir: Path | None = None, package: Path = PACKAGE_LOCALE) -> Catalogues:
        shipped = _catalogues_in(package)
        own = _catalogues_in(brand_dir / "locale") if brand_dir is not None else {}
        chains: dict[str, gettext.NullTranslations] = {}
        for language in sorted(set(shipped) | set(own)):
            chain: gettext.NullTranslations | None = None
            for path in (own.get(language), shipped.get(language)):
                if path is None:
                    continue
                compiled = _compiled(path)
                if chain is None:
                    chain = compiled
                else:
                    chain.add_fallback(compiled)
            assert chain is not None
            chains[language] = chain
        return cls(chains)
