"""The breached-password check: k-anonymity split, range parsing, the count, the cache and
one look-up per prefix in a burst, failing open or closed (a fake range API)."""

from __future__ import annotations

import asyncio

import pytest

from signup.domain.breached import BREACHED, MalformedRange, compact_range, range_key, times_seen
from signup.domain.email_domains import DomainRule
from signup.domain.errors import FieldsRefused, PasswordCheckUnavailable
from signup.service_layer.ports import RangeUnavailable
from signup.service_layer.screening import BreachCheck, Screening
from signup.testing.pwned_standin import sha1_hex

PASSWORD = "correct horse battery staple"


class FakeRanges:
    """Answers as the range API would, from a table of full SHA-1 -> count."""

    def __init__(self, seen: dict[str, int], *, fail: bool = False) -> None:
        self.seen = {sha1_hex(p): n for p, n in seen.items()}
        self.fail = fail
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None

    async def range(self, prefix: str) -> str:
        self.asked.append(prefix)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RangeUnavailable("the range API is unreachable: ClientConnectorError")
        lines = [f"{h[5:]}:{n}" for h, n in self.seen.items() if h.startswith(prefix)]
        lines += ["0" * 35 + ":0", "F" * 35 + ":0"]  # padding
        return "\r\n".join(lines)

    async def close(self) -> None:
        pass


def test_only_the_first_five_hex_digits_are_the_question() -> None:
    prefix, suffix = range_key("password")
    assert prefix + suffix == sha1_hex("password")
    assert (len(prefix), len(suffix)) == (5, 35)


def test_the_range_answer_is_read_and_padding_dropped() -> None:
    compact = compact_range(
        "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n011053fd0102e94d6ae2f8b83d76faf94f6:13\r\n"
    )
    assert times_seen(compact, "0018A45C4D1DEF81644B54AB7F969B88D65") == 1
    assert times_seen(compact, "011053FD0102E94D6AE2F8B83D76FAF94F6") == 13
    assert times_seen(compact, "00D4F6E8FA6EECAD2A3AA415EEC418D38EC") == 0
    assert times_seen(compact, "1" * 35) == 0
    with pytest.raises(MalformedRange):
        compact_range("<html>busy</html>")


async def test_a_password_seen_often_enough_is_refused_and_one_seen_less_is_not() -> None:
    ranges = FakeRanges({PASSWORD: 3})
    refusal = await BreachCheck(ranges, min_count=3).refusal(PASSWORD)
    assert refusal is not None and (refusal.field, refusal.code) == ("password", BREACHED)
    assert await BreachCheck(ranges, min_count=4).refusal(PASSWORD) is None
    assert await BreachCheck(ranges).refusal("a password nobody used") is None
    assert all(len(prefix) == 5 for prefix in ranges.asked)


async def test_range_answers_are_cached_for_a_while() -> None:
    now = [1000.0]
    ranges = FakeRanges({PASSWORD: 1})
    check = BreachCheck(ranges, cache_seconds=60, clock=lambda: now[0])
    for _ in range(3):
        assert await check.refusal(PASSWORD) is not None
    assert len(ranges.asked) == 1
    now[0] += 61
    assert await check.refusal(PASSWORD) is not None
    assert len(ranges.asked) == 2


async def test_the_cache_keeps_at_most_its_size() -> None:
    ranges = FakeRanges({})
    check = BreachCheck(ranges, cache_size=2)
    for password in ("one one one one", "two two two two", "three three three"):
        await check.refusal(password)
    await check.refusal("one one one one")
    assert len(ranges.asked) == 4, "the least recently used range left the cache"


async def test_a_burst_of_one_password_asks_once() -> None:
    ranges = FakeRanges({PASSWORD: 1})
    ranges.gate = asyncio.Event()
    check = BreachCheck(ranges)
    burst = [asyncio.create_task(check.refusal(PASSWORD)) for _ in range(20)]
    await asyncio.sleep(0.01)
    ranges.gate.set()
    results = await asyncio.gather(*burst)
    assert all(r is not None for r in results)
    assert len(ranges.asked) == 1


async def test_a_failed_look_up_accepts_when_open_and_refuses_when_closed() -> None:
    down = FakeRanges({PASSWORD: 1}, fail=True)
    assert await BreachCheck(down).refusal(PASSWORD) is None
    with pytest.raises(PasswordCheckUnavailable) as refused:
        await BreachCheck(down, fail_closed=True, retry_after=7).refusal(PASSWORD)
    assert refused.value.retry_after == 7
    # A failure is not cached: the next sign-up asks again.
    check = BreachCheck(down)
    await check.refusal(PASSWORD)
    await check.refusal(PASSWORD)
    assert len(down.asked) == 4


async def test_screening_skips_the_look_up_for_a_refused_domain() -> None:
    ranges = FakeRanges({PASSWORD: 1})
    screening = Screening(DomainRule.of(throwaway=["mailinator.com"]), BreachCheck(ranges))
    with pytest.raises(FieldsRefused) as refused:
        await screening.check("bot@mailinator.com", PASSWORD)
    assert [r.code for r in refused.value.rejections] == ["email.domain_refused"]
    assert ranges.asked == []
    with pytest.raises(FieldsRefused) as refused:
        await screening.check("ada@example.com", PASSWORD)
    assert [r.code for r in refused.value.rejections] == [BREACHED]
    await screening.check("ada@example.com", "a password nobody used")
