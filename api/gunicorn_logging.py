"""gunicorn's own log lines (startup, its configuration at debug, workers booting and
exiting, refused requests) in the gateway's format: ``logger_class`` in
``config/gunicorn.conf.py``.

gunicorn gives its loggers handlers and a formatter of its own and stops their
records from reaching the root logger. Here they reach it instead, whose handlers
``shared.logs.setup_logging`` made (``LOG_FORMAT``, ``LOG_DIR``), so every line a
web process writes has one format. gunicorn still sets their level (``loglevel``).
"""

from __future__ import annotations

from gunicorn import glogging


class GatewayLogger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                log.removeHandler(handler)
            log.propagate = True
