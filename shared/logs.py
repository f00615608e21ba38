"""Logging setup shared by every process: one line per record, text or JSON.

Structured fields ride on the record via ``extra={...}``; both formatters print
them. Nothing here ever receives a token: callers log identities, not credentials.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import os
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "warn": logging.WARNING, "error": logging.ERROR}

# Attributes every LogRecord has; anything else was passed through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# The request being served by this thread (an API request or a worker's job), so that
# every record logged while serving it carries its id, whichever module logs it.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("aigw_request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = current_request_id.get()
            if request_id is not None:
                record.request_id = request_id
        return True


def record_fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{base}.{int(record.msecs):03d}Z"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in record_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname.lower():<7} {record.name}: {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text_value(value) -> str:
    if not isinstance(value, str):
        return json.dumps(value, default=str, separators=(",", ":"))
    return json.dumps(value) if (not value or any(c in value for c in ' "=\n')) else value


def setup_logging(level: str = "info", fmt: str = "text", *, log_dir: str | None = None,
                  process_name: str = "gateway") -> None:
    """Configure the root logger for this process (idempotent)."""
    formatter = JSONFormatter() if fmt == "json" else TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        # One file per process: many processes appending to one file interleave lines.
        path = os.path.join(log_dir, f"{process_name}-{os.getpid()}.log")
        handlers.append(logging.handlers.WatchedFileHandler(path))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    # Libraries that chat at INFO about every job or connection.
    for noisy in ("urllib3", "rq.worker", "rq.queue"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

