"""`python -m signup.testing.auth0_standin --port 9000 --latency 0.05`; `--help` for more."""

from .cli import main

raise SystemExit(main())
