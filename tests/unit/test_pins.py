"""Every library whose internals the gateway relies on is pinned exactly, and these tests run
against that very version, so the tests that check those internals speak for what is deployed."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from tests.harness import ROOT

# library -> where its internals are used, and the test that fails if an upgrade changes them
INTERNALS = {
    "gunicorn": "api/gunicorn_patches.py, api/web_worker.py: tests/unit/test_gunicorn_patches.py",
    "rq": "shared/plumbing/rq_patches.py, the worker class and RQ's records: test_rq_patches.py, the worker's tests",
    "requests": "workers/cancel.py, workers/upstream.py: test_requests_internals.py",
    "urllib3": "workers/cancel.py, workers/upstream_stream.py: test_requests_internals.py, test_http_headers.py",
    "prometheus-client": "shared/metrics.py (values.ValueClass: storage chosen too late): test_metrics_directory.py",
    "tenacity": "workers/retry.py (RetryCallState.upcoming_sleep, stop_base, wait_base): test_retry.py",
    "rq-dashboard": "tools/rq_dashboard.py (requirements-dev.txt): test_rq_dashboard_tool.py",
}


def pins() -> dict[str, str]:
    found = {}
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r"):
                match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
                assert match, f"{name}: {line!r} is not pinned exactly"
                found[match[1].lower()] = match[2]
    return found


@pytest.mark.parametrize("library", sorted(INTERNALS))
def test_pinned_and_installed_at_the_pin(library):
    pinned = pins()
    assert library in pinned, f"{library} is used through its internals ({INTERNALS[library]}): pin it"
    assert version(library) == pinned[library]
