"""gunicorn's own log lines in the gateway's format (api.gunicorn_logging), and the web
processes' open-files limit (shared.plumbing.open_files)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from gunicorn.config import Config

from api.gunicorn_logging import GatewayLogger
from shared.logs import JSONFormatter


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_gunicorns_records_reach_the_root_handlers_in_our_format(monkeypatch) -> None:
    collect = Collect()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [collect])
    cfg = Config()
    cfg.set("errorlog", "-")
    cfg.set("loglevel", "debug")
    logger = GatewayLogger(cfg)
    try:
        logger.debug("Current configuration:\n  workers: 2\n  threads: 64")
        logger.info("Booting worker with pid: %s", 123)
        assert not [h for h in logger.error_log.handlers if getattr(h, "_gunicorn", False)]
        records = [json.loads(line) for line in collect.lines]
        assert [r["message"] for r in records] == ["Current configuration:\n  workers: 2\n  threads: 64",
                                                   "Booting worker with pid: 123"]
        assert {r["logger"] for r in records} == {"gunicorn.error"}
        assert all("\n" not in line for line in collect.lines)  # one line each, newlines escaped
    finally:
        logger.error_log.propagate = False


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    script = """
import resource
from shared.plumbing.open_files import raise_open_files_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    returned, soft, hard = out.split()
    assert returned == soft
    assert int(soft) == (int(hard) if int(hard) != -1 else 1024 * 1024)
