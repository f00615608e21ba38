"""The client's socket while a stream is written to it.

A client that stops reading fills its socket's buffers, and the request thread
writing to it then blocks for as long as the client keeps the connection open.
For the length of a stream, ``StreamSocket`` bounds that to the model's
``stream_idle_timeout``: each chunk waits for room in the send buffer first
(``writable``), so a stalled client is found out before a write blocks, and the
socket's own timeout backs that up for a chunk larger than the room there was.
A stalled client is then dropped with a reset, which frees the kernel's buffers
at once instead of leaving them to retry delivery for minutes.

gunicorn passes the socket in the environ; other servers get no such bound.
"""

from __future__ import annotations

import select
import socket
import struct

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and discards what is queued
# The send buffer a stream's connection may fill. Linux grows it up to tcp_wmem's maximum (4 MiB)
# for a client that does not read: a thousand stalled streams would pin gigabytes of kernel
# memory. An answer's events come far slower than this drains to a client that reads.
SEND_BUFFER_BYTES = 256 * 1024


class StreamSocket:
    def __init__(self, sock: socket.socket, idle_timeout: float):
        self.sock = sock
        self.timeout_ms = max(1, int(idle_timeout * 1000))
        self._previous = sock.gettimeout()
        sock.settimeout(idle_timeout)  # wins over any server-wide send timeout while the stream lasts
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._poller = select.poll()  # select() refuses descriptors past 1024
        self._poller.register(sock.fileno(), select.POLLOUT)

    @classmethod
    def of(cls, environ: dict, idle_timeout: float) -> StreamSocket | None:
        sock = environ.get("gunicorn.socket")
        if not isinstance(sock, socket.socket):
            return None
        try:
            return cls(sock, idle_timeout)
        except (OSError, ValueError):  # already closed under us
            return None

    def writable(self) -> bool:
        """Whether the client made room for more within the idle timeout. An error or a hang-up
        counts as writable: the write then fails and tells the client's leaving apart."""
        try:
            return bool(self._poller.poll(self.timeout_ms))
        except (OSError, ValueError):
            return True

    def drop(self) -> None:
        """The client stopped reading: reset the connection, so the server's next write fails."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def release(self) -> None:
        """The stream is over: the socket's earlier timeout applies again (keep-alive, next request)."""
        try:
            self.sock.settimeout(self._previous)
        except OSError:
            pass
