"""The web worker keeps the cyclic collector off the sign-up path (see the factory)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from signup.entrypoints.web.factory import keep_collector_off_the_hot_path
before = gc.get_threshold()
keep_collector_off_the_hot_path()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_a_worker_collects_young_objects_rarely_and_freezes_what_start_up_made() -> None:
    # In a process of its own: the settings are the whole process's.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(out.stdout)
    assert seen["before"] == [700, 10, 10]
    assert seen["after"] == [50_000, 10, 10]
    assert seen["frozen"] > 10_000  # the modules and objects imported so far
