"""A consent's text may not change under the same version: the recorded hash would lie.

Every (consent, version, language) served is remembered with the SHA-256 of its text the
first time a process starts with it. At each start the definition's texts are compared
with those: a text that differs under a version already served stops start-up, naming the
consent, the version and the language, until the site gives the new text a new version.
"""

from __future__ import annotations

from datetime import datetime

from signup.domain.form import FormDefinition
from signup.service_layer.unit_of_work import Transaction, UnitOfWork

Key = tuple[str, str, str]


class ConsentTextChanged(Exception):
    """The definition changed a consent's text without a new version."""

    def __init__(self, changed: list[Key]) -> None:
        self.changed = changed
        described = "; ".join(
            f"consent {cid!r} version {version!r} ({language})"
            for cid, version, language in changed
        )
        super().__init__(
            f"the text of {described} differs from the text served before under that "
            "version: give the changed text a new version (records of past sign-ups name "
            "the version and the hash of the text they were shown)"
        )


async def check_consent_texts(uow: UnitOfWork, form: FormDefinition, now: datetime) -> int:
    """Compare the definition's consent texts with those served before, and remember new
    ones; `ConsentTextChanged` when one changed. Returns how many were new."""
    wanted = form.consent_hashes()
    if not wanted:
        return 0

    async def compare(tx: Transaction) -> tuple[list[Key], int]:
        seen = await tx.consents.texts()
        changed = sorted(key for key, digest in wanted.items() if seen.get(key, digest) != digest)
        if changed:
            return changed, 0
        new = {key: digest for key, digest in wanted.items() if key not in seen}
        if new:
            await tx.consents.remember_texts(new, now)
        return [], len(new)

    try:
        changed, new = await uow.run(compare)
    except ConsentTextChanged:
        raise
    except Exception:
        # Another process starting at the same moment remembered the same texts first:
        # compare again with what it wrote.
        changed, new = await uow.run(compare)
    if changed:
        raise ConsentTextChanged(changed)
    return new
