"""gunicorn entry point: ``gunicorn -c config/gunicorn.conf.py api.wsgi:app``.

That config, not this module, installs the web processes' library patches
(``api.patches``): importing this builds the app and changes no library. gunicorn
imports it in each worker it forks, after the fork: the app serves the configuration
the master accepted (``api.startup.served``), the one a SIGHUP reloaded included."""

from __future__ import annotations

import atexit
import gc
import logging

from api.app import create_app
from api.startup import served
from shared.logs import setup_logging

settings, config = served()
setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="api")
# Every gunicorn thread may hold a pooled connection while it waits; a few more serve the app's own threads.
app = create_app(settings, config, pool_size=max(settings.web_threads + 8, 32))
app.start()  # gunicorn loads this module in each worker process it forks: the janitor runs there
# What start-up built (modules, the app, the config) lives as long as the process: out of the
# collector's full passes, which otherwise walk all of it again every few thousand requests.
gc.freeze()
atexit.register(app.close)
logging.getLogger("aigw.api").info("api process ready", extra={"models": [m.name for m in config.models]})
