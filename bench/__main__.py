"""`python -m bench` (`make bench`): the sign-up service's performance figures, one table.

See bench/README.md for what each row measures and how. Options:

    python -m bench [--runs 3] [--duration 10] [--workers 2] [--connections 128]
                    [--rows 1,3,4,6] [--out bench/results.md]
    python -m bench --rows soak [--soak-minutes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bench.harness import Options, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per row-1 run (the issue: 30)"
    )
    parser.add_argument("--local-duration", type=float, default=6.0, help="seconds per row-4 run")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BENCH_WEB_CONCURRENCY", "1")),
        help="SIGNUP_WEB_CONCURRENCY for the service, and the ceilings' worker count",
    )
    parser.add_argument("--connections", type=int, default=128, help="wrk connections (max load)")
    parser.add_argument("--relay-events", type=int, default=20_000)
    parser.add_argument(
        "--rows",
        default="1,3,4,6",
        help="which rows to run (5 comes with 1; 7 or `soak`: the ~12-minute soak, opt-in)",
    )
    parser.add_argument("--soak-minutes", type=int, default=10, help="row 7's length")
    parser.add_argument("--out", default="bench/results.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--src", default=None, help="measure the `signup` package of another source tree"
    )
    parser.add_argument(
        "--form-file",
        default=None,
        help="SIGNUP_FORM_FILE for the service (docs/form.example.toml): row 1's sign-ups "
        "then carry that example's fields and consents",
    )
    args = parser.parse_args()
    options = Options(
        runs=args.runs,
        duration=args.duration,
        local_duration=args.local_duration,
        workers=args.workers,
        connections=args.connections,
        relay_events=args.relay_events,
        rows={7 if r.strip() == "soak" else int(r) for r in args.rows.split(",") if r.strip()},
        soak_minutes=args.soak_minutes,
        out=args.out,
        keep=args.keep,
        src=str(Path(args.src).resolve()) if args.src else None,
        form_file=str(Path(args.form_file).resolve()) if args.form_file else None,
    )
    sys.exit(asyncio.run(run(options)))


if __name__ == "__main__":
    main()
