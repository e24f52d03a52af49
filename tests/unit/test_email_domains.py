"""The mail domain rule: throwaway domains (and their sub-domains), the deny and allow lists."""

from __future__ import annotations

import pytest

from signup.adapters.email_domains import domain_rule, throwaway_domains
from signup.domain.email_domains import DOMAIN_REFUSED, DomainRule
from signup.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_the_package_list_is_read_and_holds_the_well_known_ones() -> None:
    listed = throwaway_domains()
    assert len(listed) > 1000
    assert {"mailinator.com", "guerrillamail.com", "yopmail.com"} <= listed
    assert "gmail.com" not in listed


@pytest.mark.parametrize(
    "email",
    ["bot@mailinator.com", "bot@x.mailinator.com", "bot@a.b.yopmail.com", "bot@MAILINATOR.com."],
)
def test_throwaway_domains_and_their_sub_domains_are_refused(email: str) -> None:
    refusal = domain_rule(settings()).refusal(email)
    assert refusal is not None
    assert (refusal.field, refusal.code, refusal.rule) == ("email", DOMAIN_REFUSED, "throwaway")
    assert "throwaway" in refusal.message and "mailinator" not in refusal.message


@pytest.mark.parametrize("email", ["ada@example.com", "ada@mail.example.org", "ada@gmail.com"])
def test_other_domains_pass(email: str) -> None:
    assert domain_rule(settings()).refusal(email) is None


def test_the_deny_list_adds_domains_with_their_sub_domains() -> None:
    rule = domain_rule(settings(email_domains_deny="Spam.Example, other.test"))
    assert rule.refusal("a@spam.example") is not None
    assert rule.refusal("a@mx.spam.example") is not None
    assert rule.refusal("a@other.test") is not None
    assert rule.refusal("a@example") is None, "a parent of a denied domain is not denied"
    denied = rule.refusal("a@spam.example")
    assert denied is not None and denied.rule == "denied"


def test_an_allow_list_admits_only_its_domains() -> None:
    rule = domain_rule(settings(email_domains_allow="corp.example"))
    assert rule.refusal("ada@corp.example") is None
    assert rule.refusal("ada@eu.corp.example") is None
    refused = rule.refusal("ada@gmail.com")
    assert refused is not None and refused.rule == "not_allowed" and refused.code == DOMAIN_REFUSED
    assert rule.refusal("ada@evilcorp.example") is not None, "a suffix of the name is not a domain"


def test_throwaway_domains_are_refused_even_when_allowed() -> None:
    rule = DomainRule.of(throwaway=["mailinator.com"], allowed=["mailinator.com"])
    refusal = rule.refusal("a@mailinator.com")
    assert refusal is not None and refusal.rule == "throwaway"


def test_internationalised_domains_compare_in_their_ascii_form() -> None:
    rule = DomainRule.of(denied=["xn--bcher-kva.example"])
    assert rule.refusal("a@bücher.example") is not None
    assert DomainRule.of(denied=["bücher.example"]).refusal("a@xn--bcher-kva.example") is not None
