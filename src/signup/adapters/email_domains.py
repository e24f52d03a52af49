"""The mail domain rule built from its sources: the `disposable-email-domains` package's
list (refreshed by upgrading the package) and SIGNUP_EMAIL_DOMAINS_DENY / _ALLOW.

The package's list is read when the rule is built (the app's start), never at import.
"""

from __future__ import annotations

from signup.domain.email_domains import DomainRule
from signup.settings import Settings


def throwaway_domains() -> frozenset[str]:
    """The package's blocklist, less its own allowlist (domains it knows are kept)."""
    import disposable_email_domains as package

    kept = frozenset(getattr(package, "allowlist", ()))
    return frozenset(package.blocklist) - kept


def domain_rule(settings: Settings) -> DomainRule:
    return DomainRule.of(
        throwaway=throwaway_domains(),
        denied=settings.email_domains_deny,
        allowed=settings.email_domains_allow,
    )
