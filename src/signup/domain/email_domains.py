"""Which mail domains may key an account: throwaway ones never, and a private site's only.

Pure: the lists come from outside (the `disposable-email-domains` package and the
settings, read by `signup.adapters.email_domains` when the app is built). A listed
domain refuses its sub-domains too: `x.mailinator.com` is as throwaway as
`mailinator.com`, and an allowed `example.org` admits `mail.example.org`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DOMAIN_REFUSED = "email.domain_refused"

THROWAWAY_MESSAGE = (
    "This looks like a throwaway e-mail address. Please use an address you will keep: "
    "we send your account's messages there."
)
DENIED_MESSAGE = "Addresses at this domain cannot be used here. Please use another address."
NOT_ALLOWED_MESSAGE = (
    "Only addresses at the organisation's own domains can sign up here. "
    "Please use your work address."
)


def canonical_domain(domain: str) -> str:
    """Lower-case, no trailing dot, ASCII (punycode) where the domain is internationalised."""
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _suffixes(domain: str) -> Iterator[str]:
    """`a.b.example.com`, `b.example.com`, `example.com`, `com`."""
    labels = domain.split(".")
    for start in range(len(labels)):
        yield ".".join(labels[start:])


def _listed(domain: str, listed: frozenset[str]) -> bool:
    return any(suffix in listed for suffix in _suffixes(domain))


@dataclass(frozen=True, slots=True)
class DomainRefusal:
    field: str
    message: str
    code: str = DOMAIN_REFUSED
    # Why, for the log and the metrics: `throwaway`, `denied` or `not_allowed`.
    rule: str = "throwaway"


@dataclass(frozen=True, slots=True)
class DomainRule:
    """Throwaway domains are refused always, `denied` ones too; a non-empty `allowed`
    admits only its domains (and their sub-domains)."""

    throwaway: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        throwaway: Iterable[str] = (),
        denied: Iterable[str] = (),
        allowed: Iterable[str] = (),
    ) -> DomainRule:
        def clean(domains: Iterable[str]) -> frozenset[str]:
            return frozenset(filter(None, map(canonical_domain, domains)))

        return cls(clean(throwaway), clean(denied), clean(allowed))

    def refusal(self, email: str) -> DomainRefusal | None:
        """Why `email` (already normalised) may not sign up here; None when it may."""
        domain = canonical_domain(email.rpartition("@")[2])
        if self.allowed and not _listed(domain, self.allowed):
            return DomainRefusal("email", NOT_ALLOWED_MESSAGE, rule="not_allowed")
        if _listed(domain, self.denied):
            return DomainRefusal("email", DENIED_MESSAGE, rule="denied")
        if _listed(domain, self.throwaway):
            return DomainRefusal("email", THROWAWAY_MESSAGE, rule="throwaway")
        return None
