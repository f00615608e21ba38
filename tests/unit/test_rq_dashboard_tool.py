"""tools/rq_dashboard.py's two lookups, checked against the installed rq-dashboard (pinned in
requirements-dev.txt): each test fails if an upgrade changes what the tool replaces."""

from __future__ import annotations

import inspect
import sys

import pytest
import rq
import rq.job
from rq_dashboard import web

from tools import rq_dashboard


def test_the_dashboard_s_views_look_workers_and_jobs_up_through_its_web_module():
    assert web.Worker is rq.Worker and web.Job is rq.job.Job
    source = inspect.getsource(web)
    # The lookups without the configured serializer: an upgrade that passes it makes the tool unnecessary.
    assert "Worker.all(connection=current_app.redis_conn)" in source
    assert "Job.fetch(job_id, connection=current_app.redis_conn)" in source
    assert hasattr(web.config, "serializer")


def test_importing_the_tool_changes_nothing_main_installs_its_lookups(monkeypatch):
    assert web.Worker is rq.Worker  # this module imported the tool above
    monkeypatch.setattr(web, "Worker", web.Worker)
    monkeypatch.setattr(web, "Job", web.Job)
    monkeypatch.setattr(rq_dashboard.cli, "main", lambda: None)
    monkeypatch.setattr("sys.argv", ["x"])
    rq_dashboard.main()
    assert issubclass(web.Worker, rq.Worker) and web.Worker is not rq.Worker
    assert issubclass(web.Job, rq.job.Job) and web.Job is not rq.job.Job


@pytest.mark.parametrize("argv", [["x"], ["x", "-j"]])
def test_json_is_always_on(monkeypatch, argv):
    monkeypatch.setattr("sys.argv", list(argv))
    monkeypatch.setattr(web, "Worker", web.Worker)
    monkeypatch.setattr(web, "Job", web.Job)
    monkeypatch.setattr(rq_dashboard.cli, "main", lambda: None)
    rq_dashboard.main()
    assert sys.argv.count("-j") + sys.argv.count("--json") == 1
