"""Process plumbing both sides' processes use, which is not a contract between them.

``shared`` holds what the API and the workers must agree on (config, keys, the job
and reply schema, errors, logging, metrics and where they are written). This package
holds what each process merely needs to run well, written once because both kinds of
process need it: a last-in, first-out thread pool, the open-files limit, the
``/metrics`` endpoint (served by gunicorn's master or ``python -m workers``), and the
RQ patches each process's entry point installs (``api.patches``, ``workers.patches``).
"""
