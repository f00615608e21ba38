"""A gateway process's limit on open files.

Every client connection, kept-alive and idle ones included, is a file descriptor,
and so is every Redis connection a request thread or a job holds, and every
provider connection: a host serving a thousand open streams needs more than the
1,024 a soft limit often allows. The soft limit is raised to the hard one, which
an unprivileged process may do. The entry points (gunicorn's master, ``python -m
workers``) do it before forking, so their children inherit it.
"""

from __future__ import annotations

import resource

# With no hard limit (RLIM_INFINITY) the soft one still needs a number; the kernel's
# usual ceiling on a process's descriptors (fs.nr_open).
_CEILING = 1024 * 1024


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _CEILING if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else _CEILING
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
