"""`uvicorn --factory` entry: each web worker process builds its app from the environment."""

from __future__ import annotations

import gc
import os

from fastapi import FastAPI

from signup.entrypoints.web.app import create_app
from signup.log_config import configure_logging
from signup.settings import Settings


def app_from_env() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings, run_relay=os.environ.get("SIGNUP_RUN_RELAY", "1") == "1")
    # What is built by now (modules, the app, its models and schemas) lives as long as
    # the process: take it out of the cyclic collector's sight, so that a full
    # collection no longer walks it and stops the event loop for tens of milliseconds.
    gc.collect()
    gc.freeze()
    return app
