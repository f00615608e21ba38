"""``python -m tools.rq_dashboard [rq-dashboard options]``: rq-dashboard for JSON-serialized jobs.

rq-dashboard 0.9.0 takes ``-j`` (JSON serializer) but does not pass it to
``Worker.all()`` and ``Job.fetch()``, so its worker list fails with a
DeserializationError whenever a worker is busy with a JSON job, and single-job
pages fail too. This starts it with those two lookups using its configured
serializer (``install_json_lookups``, called by ``main``; importing this module
changes nothing); everything else is rq-dashboard unchanged. ``-j`` is always on here,
and the dashboard answers 401 unless given ``--username`` and ``--password``.
"""

from __future__ import annotations

import sys

from rq import Worker
from rq.job import Job
from rq_dashboard import cli, web


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


def main() -> None:
    install_json_lookups()  # the one change this process makes to a library
    if "-j" not in sys.argv and "--json" not in sys.argv:
        sys.argv.append("--json")
    cli.main()


if __name__ == "__main__":
    main()
