"""`uvicorn --factory` entry: each web worker process builds its app from the environment."""

from __future__ import annotations

import os

from fastapi import FastAPI

from signup.entrypoints.web.app import create_app
from signup.log_config import configure_logging
from signup.settings import Settings


def app_from_env() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings, run_relay=os.environ.get("SIGNUP_RUN_RELAY", "1") == "1")
