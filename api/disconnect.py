"""Noticing that a waiting client has gone, so its provider call can be dropped.

A request thread blocked on Redis never writes to the client until the answer is
ready, so it would not learn of a disconnect until then. gunicorn passes the
client socket in the environ; a non-blocking peek that reads end-of-file means
the client closed its side. (Data waiting there is a pipelined request, not a
disconnect.) Other servers get no probe and simply wait for the answer.
"""

from __future__ import annotations

import socket
from collections.abc import Callable


def client_gone_probe(environ: dict) -> Callable[[], bool] | None:
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        return None

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # nothing to read: still connected
        except OSError:
            return True  # reset or closed under us

    return gone
