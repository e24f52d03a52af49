"""docs/contract.md is the outside contract: every setting the code reads is in it."""

from __future__ import annotations

import re
from pathlib import Path

from signup.settings import Settings

CONTRACT = Path(__file__).parents[2] / "docs" / "contract.md"


def test_every_setting_is_in_the_contract() -> None:
    documented = set(re.findall(r"SIGNUP_[A-Z0-9_]+", CONTRACT.read_text()))
    missing = sorted(f"SIGNUP_{name.upper()}" for name in Settings.model_fields)
    missing = [name for name in missing if name not in documented]
    assert not missing, f"settings missing from docs/contract.md: {missing}"


def test_nothing_in_the_repository_points_outside_it() -> None:
    root = Path(__file__).parents[2]
    outside = []
    for folder in ("src", "tests", "docs", "bench"):
        for path in (root / folder).rglob("*"):
            if path.suffix in {".py", ".md"} and path.is_file():
                text = path.read_text(errors="replace")
                if "shared/design.md" in text or "shared/auth0.md" in text:
                    outside.append(str(path.relative_to(root)))
    readme = (root / "README.md").read_text()
    if "shared/" in readme:
        outside.append("README.md")
    # This file names them only to look for them.
    outside = [p for p in outside if not p.endswith("test_contract_documented.py")]
    assert not outside, f"files that point outside the repository: {outside}"
