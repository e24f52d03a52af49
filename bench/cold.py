"""What a pause costs on this machine: the same small piece of the service's work, timed
back to back and then after pausing (sleeping, or spinning on other code) for a while.

    python -m bench.cold [--calls 300]

The piece is the sign-up form's validation (`SignUpRequest`, ~20 µs when warm). On the
2-core VM this benchmark runs on, code that has not run for a millisecond or more runs
several times slower, whatever the thread did meanwhile: the reason a sign-up costs
more CPU at half load than at the maximum, and the in-process figures are lower than
the served ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import orjson

from signup.entrypoints.web.schemas import SignUpRequest

PAUSES_MS = (0.0, 0.5, 2.0, 10.0, 50.0)


def _body(i: int) -> bytes:
    return orjson.dumps(
        {
            "email": f"ada-{i}@example.com",
            "password": "Quiet-Harbour-Lantern-42",
            "given_name": "Ada",
            "family_name": "Lovelace",
        }
    )


def _timed(i: int) -> float:
    body = _body(i)
    start = time.perf_counter_ns()
    SignUpRequest.model_validate_json(body)
    return (time.perf_counter_ns() - start) / 1000


def _spin(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def median_after(pause: Callable[[float], None], ms: float, calls: int) -> float:
    times = []
    for i in range(calls):
        if ms:
            pause(ms / 1000)
        times.append(_timed(i))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    for i in range(2000):  # warm up: imports, caches, the validator's first calls
        _timed(i)
    print("pause (ms) | after sleeping (µs) | after spinning (µs)")
    for ms in PAUSES_MS:
        slept = median_after(time.sleep, ms, args.calls)
        spun = median_after(_spin, ms, args.calls)
        print(f"{ms:10g} | {slept:19.1f} | {spun:19.1f}")


if __name__ == "__main__":
    main()
