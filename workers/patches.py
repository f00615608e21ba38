"""Every change a worker process makes to a library, installed in one place.

``install_patches()`` is called once, by ``python -m workers`` (``workers.__main__``),
in the supervisor before it forks the worker processes, which inherit it. Importing any
of the gateway's modules changes no library; ``tests/unit/test_no_import_patches.py``
checks it.

- RQ: ``shared.plumbing.rq_patches`` (the serializer check skipped for ours, job data
  stored as written, job dates read with ``fromisoformat``).

Not patches, as they change nothing outside the gateway's own objects: provider answers'
headers are read by ``workers.http_headers``, but only on the connections the upstream
client makes (``workers.cancel``'s connection classes), never process-wide; and the RQ
worker class (``workers.worker_classes``) overrides RQ's methods in its own subclass.
"""

from __future__ import annotations

from shared.plumbing import rq_patches


def install_patches() -> None:
    rq_patches.install()
