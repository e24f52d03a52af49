"""The sign-up service benchmark: `python -m bench` (see bench/README.md)."""
