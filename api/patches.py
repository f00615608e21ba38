"""Every change the web process makes to a library, installed in one place.

``install_patches()`` is called once, by gunicorn's config (``config/gunicorn.conf.py``),
in the master before it forks the web workers, which inherit it. Importing any of the
gateway's modules changes no library; ``tests/unit/test_no_import_patches.py`` checks it.

- gunicorn: its own refusals (a malformed request, 414, 431, ...) are written as our JSON
  error bodies instead of its HTML (``api.gunicorn_patches.install_json_errors``), and no
  response carries its ``Server: gunicorn`` header (``install_no_server_header``).
- RQ: ``shared.plumbing.rq_patches`` (the serializer check skipped for ours, job data
  stored as written, job dates read with ``fromisoformat``).

Not patches, but gunicorn internals the web worker builds on by subclassing (its
request parser's source, its chunked reader): ``api.gunicorn_patches``.
"""

from __future__ import annotations

from api.gunicorn_patches import install_json_errors, install_no_server_header
from shared.plumbing import rq_patches


def install_patches() -> None:
    install_json_errors()
    install_no_server_header()
    rq_patches.install()
