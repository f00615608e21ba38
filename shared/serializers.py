"""How RQ jobs and their results are written in Redis: JSON, never pickle.

orjson writes and reads standard JSON several times faster than the standard
library; a job carries the whole prompt, so that is most of the serialising a
request costs. What it writes is what RQ's own ``JSONSerializer`` reads, so
``rq info -S json`` and rq-dashboard (``-j``) see the same jobs.

A job's data is stored as that JSON, not zlib-compressed as RQ does: compressing
costs about 80 µs per job however short the prompt (deflate's set-up), at the
enqueue and again whenever the worker saves the job. RQ reads uncompressed data
as it is (its fallback for such jobs), and compressed jobs still read. And a
job's timestamps are read with ``datetime.fromisoformat`` instead of RQ's
``strptime``, whose pure-Python parser is slow, and slower still when the CPU's
caches have gone cold, as they have when a job arrives at an idle worker.
"""

from __future__ import annotations

import datetime
import sys
import zlib
from typing import Any

import orjson
import rq.job
import rq.worker  # with rq.job, rq.queue, rq.registry, rq.results: every module that resolves
from rq.serializers import resolve_serializer as _rq_resolve_serializer


class JobSerializer:
    @staticmethod
    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)


def resolve_serializer(serializer=None):
    """RQ's ``resolve_serializer``, minus its check of ours: RQ checks the serializer against
    a runtime ``typing.Protocol`` every time it builds a job, queue, registry or result, about
    12 µs each and several times per request, on the request's path."""
    if serializer is JobSerializer:
        return JobSerializer
    return _rq_resolve_serializer(serializer)


class PlainJobData:
    """What ``rq.job`` sees as ``zlib``: it stores a job's data (and a failure's text) as
    given, and reads either form (plain data fails to decompress, and RQ then takes it as it is)."""

    error = zlib.error
    decompress = staticmethod(zlib.decompress)

    @staticmethod
    def compress(data: bytes) -> bytes:
        return data


_rq_str_to_date = rq.job.str_to_date


def str_to_date(text: bytes | str) -> datetime.datetime:
    """RQ's ``str_to_date``: RQ writes ``%Y-%m-%dT%H:%M:%S.%fZ`` (UTC), which
    ``fromisoformat`` reads as the same aware datetime; anything else goes to RQ's own."""
    try:
        return datetime.datetime.fromisoformat(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, TypeError, AttributeError):
        return _rq_str_to_date(text)


def _install() -> None:
    """Into every RQ module that imported RQ's (they import it by name)."""
    for name, module in list(sys.modules.items()):
        if (name.startswith("rq.") and name != "rq.serializers"
                and getattr(module, "resolve_serializer", None) is _rq_resolve_serializer):
            module.resolve_serializer = resolve_serializer
    rq.job.zlib = PlainJobData
    rq.job.str_to_date = str_to_date


_install()
