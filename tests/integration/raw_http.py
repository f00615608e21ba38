"""HTTP/1.1 by hand over a socket, for tests that send what no client library would: requests
cut short or sent slowly, from a chosen loopback source address (127/8 is all this machine)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass

from sandbox.gitlab import DEMO_TOKEN

AUTH = f"Authorization: Bearer {DEMO_TOKEN}".encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def connect(port: int, source: str = "127.0.0.1", *, timeout: float = 10.0,
            receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def chat_request(content: str = "hi", *, path: str = "/v1/chat/completions", extra: bytes = b"",
                 close: bool = False, model: str = "chat") -> bytes:
    if path == "/v1/messages":
        body = json.dumps({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": content}]})
    else:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}]})
    data = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n".encode() + AUTH
            + b"\r\n" + extra + (b"Connection: close\r\n" if close else b"")
            + b"Content-Length: %d\r\n\r\n" % len(data) + data)


def read_answer(sock: socket.socket, buffered: bytearray | None = None) -> Answer:
    """One response from ``sock``; ``buffered`` holds bytes already read (and keeps what follows)."""
    data = buffered if buffered is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole head: {bytes(data)!r}")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    data[:] = body[length:]
    return Answer(int(status_line.split()[1]), headers, bytes(body[:length]))


def closed_by_peer(sock: socket.socket, timeout: float) -> bytes:
    """Everything the peer sends until it closes (fails if it does not within ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"still open after {timeout}s")


class SlowHeads:
    """``count`` connections to ``port`` that send a request's head one line every ``interval``
    seconds (the slow-client attack of the security issue), until ``finish`` or ``close``."""

    def __init__(self, port: int, count: int, interval: float):
        self.interval = interval
        self.sockets = [connect(port) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n")
        self.stop = threading.Event()
        self.lines = 0
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(self.interval):
            self.lines += 1
            for sock in self.sockets:
                sock.sendall(b"X-Slow-%d: still coming\r\n" % self.lines)

    def finish(self) -> None:
        """Stop trickling; the connections stay open."""
        self.stop.set()
        self.thread.join(timeout=10)

    def close(self) -> None:
        self.finish()
        for sock in self.sockets:
            sock.close()
