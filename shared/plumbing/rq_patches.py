"""RQ made cheaper on the request's path: three things in RQ's modules replaced, each by a
function named for it, all by ``install()``. Nothing happens on import: each gateway
process's entry point calls ``install()`` once, through its side's ``install_patches()``
(``api.patches``, ``workers.patches``), before it starts serving.

- ``skip_serializer_check``: RQ checks the serializer it is given against a runtime
  ``typing.Protocol`` every time it builds a job, queue, registry, result or worker,
  several times per request. The modules that do it on the request's path get a
  ``resolve_serializer`` that returns ``JobSerializer`` at once and sends anything
  else to RQ's own.
- ``store_job_data_as_written``: RQ zlib-compresses a job's data (and a failure's
  text) at every save, and deflate's set-up costs the same however short the
  prompt. ``rq.job`` is given a ``zlib`` that stores them as given, plain JSON, and
  still reads compressed ones. RQ itself reads plain data as it is (a failed
  decompress falls back to it), so stock RQ, ``rq info`` and rq-dashboard read
  these jobs, and processes with and without the patch read each other's.
- ``read_job_dates_with_fromisoformat``: ``rq.job`` reads a job's timestamps with
  ``strptime``, a slow pure-Python parser; ``datetime.fromisoformat`` reads RQ's
  format as the same aware datetime, and anything else still goes to RQ's reader.

``tests/unit/test_rq_patches.py`` fails if an RQ upgrade changes what these rely on.
"""

from __future__ import annotations

import datetime
import importlib
import zlib

import rq.job
import rq.utils
from rq.serializers import resolve_serializer as rq_resolve_serializer

from shared.serializers import JobSerializer

# The RQ modules that resolve a serializer on the request's path (each imports RQ's by name).
SERIALIZER_RESOLVING_MODULES = ("rq.job", "rq.queue", "rq.registry", "rq.results", "rq.worker.base")


def resolve_serializer(serializer=None):
    """RQ's ``resolve_serializer``, minus its check of ours."""
    if serializer is JobSerializer:
        return JobSerializer
    return rq_resolve_serializer(serializer)


class JobDataAsWritten:
    """What ``rq.job`` sees as ``zlib``: it stores a job's data (and a failure's text) as
    given, and reads either form (plain data fails to decompress, and RQ then takes it as it is)."""

    error = zlib.error
    decompress = staticmethod(zlib.decompress)

    @staticmethod
    def compress(data: bytes) -> bytes:
        return data


def str_to_date(text: bytes | str) -> datetime.datetime:
    """RQ's ``str_to_date``: RQ writes ``%Y-%m-%dT%H:%M:%S.%fZ`` (UTC), which
    ``fromisoformat`` reads as the same aware datetime; anything else goes to RQ's own."""
    try:
        return datetime.datetime.fromisoformat(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, TypeError, AttributeError):
        return rq.utils.str_to_date(text)


def skip_serializer_check() -> None:
    for name in SERIALIZER_RESOLVING_MODULES:
        importlib.import_module(name).resolve_serializer = resolve_serializer


def store_job_data_as_written() -> None:
    rq.job.zlib = JobDataAsWritten


def read_job_dates_with_fromisoformat() -> None:
    rq.job.str_to_date = str_to_date


def install() -> None:
    """All three, for this process and the ones it forks afterwards. Calling it again is harmless."""
    skip_serializer_check()
    store_job_data_as_written()
    read_job_dates_with_fromisoformat()
