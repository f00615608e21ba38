"""``python -m tools.container.health``: the image's HEALTHCHECK, for whichever role runs.

The web role (gunicorn, PID 1) is healthy while ``/health`` answers 200 on ``$PORT`` (liveness:
no dependency is checked, so a Redis outage does not get every API container restarted). Any
other role (``python -m workers``, the stand-ins, rq-dashboard) serves no ``/health``; it is healthy
while its PID 1 runs, which is while the container runs: the worker supervisor restarts its own
processes (README, "Operating it").
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def main() -> int:
    try:
        command = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        command = []
    if not any(b"gunicorn" in part for part in command[:2]):
        return 0
    port = os.environ.get("PORT") or "8080"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as error:
        print(f"/health: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
