"""gunicorn entry point: ``gunicorn -c config/gunicorn.conf.py api.wsgi:app``."""

from __future__ import annotations

import logging
import os

from api.app import create_app
from shared.config import ConfigError, exit_on_config_error, load_config
from shared.logs import setup_logging
from shared.settings import Settings

try:
    settings = Settings.from_env()
    config = load_config(settings.config_file_path)
except ConfigError as error:
    exit_on_config_error(error.problems)

setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="api")
threads = int(os.environ.get("WEB_THREADS", "0") or 0)
app = create_app(settings, config, pool_size=max(threads + 8, 32) if threads else 128)
logging.getLogger("aigw.api").info("api process ready", extra={"models": [m.name for m in config.models]})
