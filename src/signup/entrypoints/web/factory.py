"""`uvicorn --factory` entry: each web worker process builds its app from the environment."""

from __future__ import annotations

import gc
import os

from fastapi import FastAPI

from signup.entrypoints.web.app import create_app
from signup.log_config import configure_logging
from signup.settings import Settings

# A young collection walks every young object still alive: with a hundred sign-ups in
# flight, thousands of them, and at CPython's default threshold it ran many times a
# second finding next to nothing, as almost everything a sign-up makes is freed by
# reference counting. 50,000 is above what the sign-ups in flight hold at once, so a
# collection runs only once that many objects have piled up (cycles left behind), not
# on every swell of the load. The measurement: docs/decisions/0009.
YOUNG_COLLECTION_THRESHOLD = 50_000


def keep_collector_off_the_hot_path() -> None:
    """For a server process, once its app is built."""
    # What is built by now (modules, the app, its models and schemas) lives as long as
    # the process: out of the cyclic collector's sight, a full collection no longer
    # walks it and stops the event loop for tens of milliseconds.
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD)


def app_from_env() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(
        settings, run_relay=os.environ.get("SIGNUP_RUN_RELAY", "1") == "1", ops_server=True
    )
    keep_collector_off_the_hot_path()
    return app
