"""The proof-of-work gate: ALTCHA challenges signed, solved and checked, each solution
accepted once, before it expires, only when one of our keys signed it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from altcha.v1 import ChallengeOptions, create_challenge, solve_challenge

from signup.adapters.challenge import AltchaSigner
from signup.domain.errors import ChallengeRefused
from signup.service_layer.challenge import ChallengeGate
from signup.settings import Settings
from signup.testing.pow import solve, token

KEY = "k" * 40
OLD_KEY = "o" * 40
NOW = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


class SpentInMemory:
    """`SpentSolutions` as a dict: the owner of each solution id."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    async def spend(self, solution_id: str, owner: str, expires_at: datetime) -> bool:
        return self.owners.setdefault(solution_id, owner) == owner

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def gate(signer: AltchaSigner | None = None) -> tuple[ChallengeGate, Clock, SpentInMemory]:
    clock, spent = Clock(), SpentInMemory()
    signer = signer or AltchaSigner(KEY, [], 2_000)
    return ChallengeGate(signer, spent, clock, timedelta(seconds=300)), clock, spent


def test_a_challenge_has_the_widget_s_shape_and_its_expiry_in_the_signed_salt() -> None:
    challenge = AltchaSigner(KEY, [], 2_000).issue(NOW + timedelta(seconds=300))
    assert set(challenge) == {"algorithm", "challenge", "maxnumber", "salt", "signature"}
    assert challenge["algorithm"] == "SHA-256"
    assert challenge["maxnumber"] == 2_000
    assert f"expires={int(NOW.timestamp()) + 300}" in challenge["salt"]
    assert len(challenge["challenge"]) == 64 and len(challenge["signature"]) == 64


def test_the_library_s_own_solver_and_ours_give_accepted_solutions() -> None:
    signer = AltchaSigner(KEY, [], 2_000)
    challenge = signer.issue(NOW + timedelta(seconds=300))
    # The library's reference solver (as the widget computes it), and ours.
    found = solve_challenge(challenge["challenge"], challenge["salt"], "SHA-256", 2_000)
    assert found is not None
    theirs = signer.check(token(challenge, found.number))
    ours = signer.check(solve(challenge))
    assert theirs is not None and theirs == ours
    assert theirs.id == challenge["challenge"]
    assert theirs.expires_at == NOW + timedelta(seconds=300)


async def test_a_good_solution_passes_once() -> None:
    checker, _, spent = gate()
    solution = solve(checker.issue())
    await checker.redeem(solution, None)
    assert len(spent.owners) == 1
    with pytest.raises(ChallengeRefused) as refused:
        await checker.redeem(solution, None)
    assert refused.value.code == "challenge.used"


async def test_the_same_request_repeated_with_its_key_passes_again_another_does_not() -> None:
    checker, _, _ = gate()
    solution = solve(checker.issue())
    await checker.redeem(solution, "key-1")
    await checker.redeem(solution, "key-1")  # the answer was lost: the client repeats
    for other in ("key-2", None):
        with pytest.raises(ChallengeRefused, match="used"):
            await checker.redeem(solution, other)


@pytest.mark.parametrize("missing", [None, ""])
async def test_no_solution_is_missing(missing: str | None) -> None:
    checker, _, spent = gate()
    with pytest.raises(ChallengeRefused) as refused:
        await checker.redeem(missing, None)
    assert refused.value.code == "challenge.missing" and refused.value.field == "challenge"
    assert spent.owners == {}


async def test_an_expired_solution_is_refused_and_not_recorded() -> None:
    checker, clock, spent = gate()
    solution = solve(checker.issue())
    clock.now = NOW + timedelta(seconds=300)
    with pytest.raises(ChallengeRefused) as refused:
        await checker.redeem(solution, None)
    assert refused.value.code == "challenge.expired"
    assert spent.owners == {}


def _tampered(solution: str, **changes: object) -> str:
    payload = orjson.loads(base64.b64decode(solution))
    payload.update(changes)
    return base64.b64encode(orjson.dumps(payload)).decode()


def _b64(value: object) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


async def test_wrong_foreign_and_malformed_solutions_are_invalid() -> None:
    checker, _, spent = gate()
    challenge = checker.issue()
    good = solve(challenge)
    number = orjson.loads(base64.b64decode(good))["number"]
    foreign = solve(AltchaSigner("f" * 40, [], 2_000).issue(NOW + timedelta(seconds=60)))
    unsigned_expiry = create_challenge(
        ChallengeOptions(algorithm="SHA-256", max_number=2_000, hmac_key=KEY)
    )
    no_expiry = solve(
        {
            "algorithm": "SHA-256",
            "challenge": unsigned_expiry.challenge,
            "maxnumber": 2_000,
            "salt": unsigned_expiry.salt,
            "signature": unsigned_expiry.signature,
        }
    )
    later = f"expires={int(NOW.timestamp()) + 10_000}"
    bad = [
        _tampered(good, number=number + 1),  # wrong number
        token(challenge, number + 1),
        foreign,  # another site's key
        no_expiry,  # ours, but says no expiry: we never sign one like that
        _tampered(good, salt=challenge["salt"].split("?")[0] + "?" + later + "&"),
        _tampered(good, signature="0" * 64),
        _tampered(good, algorithm="SHA-1"),
        _tampered(good, number=True),
        _tampered(good, number=str(number)),
        _tampered(good, number=-1),
        _tampered(good, salt=None),
        _b64([1, 2]),
        _b64(5),
        _b64("text"),
        "not base64 at all!",
        base64.b64encode(b"\xff\xfe").decode(),
        "A" * 5000,
    ]
    for solution in bad:
        with pytest.raises(ChallengeRefused) as refused:
            await checker.redeem(solution, None)
        assert refused.value.code == "challenge.invalid", solution
    assert spent.owners == {}
    await checker.redeem(good, None)


async def test_after_a_key_rotation_challenges_handed_out_before_it_still_pass() -> None:
    before, _, _ = gate(AltchaSigner(OLD_KEY, [], 2_000))
    handed_out = solve(before.issue())
    after, _, _ = gate(AltchaSigner(KEY, [OLD_KEY], 2_000))
    await after.redeem(handed_out, None)
    new = after.issue()
    assert AltchaSigner(KEY, [], 2_000).check(solve(new)) is not None, "signed with the new key"
    dropped, _, _ = gate(AltchaSigner(KEY, [], 2_000))
    with pytest.raises(ChallengeRefused, match="invalid"):
        await dropped.redeem(solve(before.issue()), None)


def test_pow_needs_a_long_key_and_previous_keys_are_a_list() -> None:
    with pytest.raises(ValueError, match="SIGNUP_CHALLENGE_KEY"):
        Settings(_env_file=None, challenge="pow")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="SIGNUP_CHALLENGE_KEY"):
        Settings(_env_file=None, challenge="pow", challenge_key="short")  # type: ignore[call-arg]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, challenge="pow", challenge_key=KEY, challenge_previous_keys=" a , b,"
    )
    assert [k.get_secret_value() for k in settings.challenge_previous_keys] == ["a", "b"]
    assert "a" not in repr(settings.challenge_previous_keys)
    assert Settings(_env_file=None).challenge == "off"  # type: ignore[call-arg]


def test_the_page_shows_the_widget_only_when_on_and_in_the_page_s_language() -> None:
    from signup.entrypoints.web.page import render_page

    on = Settings(_env_file=None, challenge="pow", challenge_key=KEY)  # type: ignore[call-arg]
    english, german = render_page(on, "en"), render_page(on, "de")
    for page in (english, german):
        assert '<altcha-widget id="challenge-widget" challengeurl="/signup/challenge"' in page
        assert '<script type="module" src="/static/vendor/altcha/altcha.js?v=' in page
        assert 'workerurl="/static/vendor/altcha/worker.js?v=' in page
    assert "I&#39;m not a robot" in english or "I\\u0027m not a robot" in english
    assert "Ich bin kein Roboter" in german
    assert "altcha" not in render_page(Settings(_env_file=None))  # type: ignore[call-arg]
