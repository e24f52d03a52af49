"""The sign-up service benchmark: `python -m bench` (see README.md)."""
