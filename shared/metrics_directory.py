"""Where every gateway process on a host writes its metrics (prometheus-client's
multiprocess mode).

prometheus-client picks its storage once, when it is first imported: files in
``PROMETHEUS_MULTIPROC_DIR`` if the variable is set then, memory otherwise. So
each process's entry point calls ``use_host_directory()`` before anything
imports it (``config/gunicorn.conf.py``, ``python -m workers``). This module
must not import prometheus-client itself. Every process on a host must choose the
same directory, whichever side it is (the web master's ``/metrics`` sums what they
all write there): an agreement between the two sides, so it lives in ``shared``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def host_directory() -> Path:
    """The directory: ``PROMETHEUS_MULTIPROC_DIR``, else one per user under the temp dir."""
    return Path(os.environ.get(DIR_ENV) or Path(tempfile.gettempdir()) / f"ai-gateway-metrics-{os.getuid()}")


def use_host_directory() -> Path:
    """Choose (and create) the directory, for this process and the ones it starts."""
    directory = host_directory()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[DIR_ENV] = str(directory)
    return directory
