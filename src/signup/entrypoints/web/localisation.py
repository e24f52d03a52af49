"""The request's language and its translations, for the page, the errors and the
verification page: the catalogues (`signup.adapters.catalogues`) and the choice
(`signup.entrypoints.web.language`), built once per app."""

from __future__ import annotations

import gettext
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request

from signup.adapters.catalogues import Catalogues
from signup.entrypoints.web.language import Languages
from signup.settings import Settings


@dataclass(frozen=True)
class Localisation:
    catalogues: Catalogues
    languages: Languages

    @classmethod
    def from_settings(cls, settings: Settings, more: Iterable[str] = ()) -> Localisation:
        """`more`: languages offered without a catalogue (the form definition's labels):
        the page's own words are English in them."""
        catalogues = Catalogues.load(settings.brand_dir)
        return cls(catalogues, Languages([*catalogues.languages, *more]))

    def language_of(self, request: Request) -> str:
        """`?lang=` if offered, else the best offered match of `Accept-Language`, else English."""
        return self.languages.for_request(request.query_params, request.headers)

    def translations(self, language: str) -> gettext.NullTranslations:
        return self.catalogues.translations(language)
