"""``python -m tools.rq_dashboard [rq-dashboard options]``: rq-dashboard for JSON-serialized jobs.

rq-dashboard 0.9.0 takes ``-j`` (JSON serializer) but does not pass it to
``Worker.all()`` and ``Job.fetch()``, so its worker list fails with a
DeserializationError whenever a worker is busy with a JSON job, and single-job
pages fail too. This starts it with those two lookups using its configured
serializer (``install_json_lookups``, called by ``main``; importing this module
changes nothing); everything else is rq-dashboard unchanged. ``-j`` is always on here,
and the dashboard answers 401 unless given ``--username`` and ``--password``.

It is read-only unless started with ``--allow-actions`` (``install_read_only``): its
actions (requeue, delete, empty, compact) have no CSRF protection, requeue-all even
answers a GET, and a browser that keeps the dashboard's login would carry them out
for any page that links there. A gateway job needs none of them: its client had its
answer (docs/operations.md, "The queues").
"""

from __future__ import annotations

import sys

from flask import abort, request
from rq import Worker
from rq.job import Job
from rq_dashboard import cli, web

ALLOW_ACTIONS = "--allow-actions"


def _serializer():
    return web.config.serializer


class _JSONAwareWorker(Worker):
    @classmethod
    def all(cls, *args, **kwargs):
        kwargs.setdefault("serializer", _serializer())
        return super().all(*args, **kwargs)


class _JSONAwareJob(Job):
    @classmethod
    def fetch(cls, *args, **kwargs):
        kwargs.setdefault("serializer", _serializer())
        return super().fetch(*args, **kwargs)


def install_json_lookups() -> None:
    """rq-dashboard's views look workers and jobs up through its ``web`` module's names."""
    web.Worker = _JSONAwareWorker
    web.Job = _JSONAwareJob


def _refuse_actions():
    if request.method not in ("GET", "HEAD") or "/requeue/" in request.path:
        abort(403, description=f"This dashboard is read-only (start it with {ALLOW_ACTIONS} to act on jobs).")


def install_read_only() -> None:
    """Every action refused 403 before rq-dashboard's view runs: a hook on its blueprint (Flask's
    public ``before_request``), registered before the app takes the blueprint."""
    web.blueprint.before_request(_refuse_actions)


def main() -> None:
    install_json_lookups()  # the one change this process makes to a library
    if ALLOW_ACTIONS in sys.argv:
        sys.argv.remove(ALLOW_ACTIONS)
    else:
        install_read_only()
    if "-j" not in sys.argv and "--json" not in sys.argv:
        sys.argv.append("--json")
    cli.main()


if __name__ == "__main__":
    main()
