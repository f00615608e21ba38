"""Cancelling a job's upstream call from another thread, by shutting down its sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from workers.cancel import (
    CLIENT_GONE,
    DEADLINE,
    CancellableAdapter,
    CancelScope,
    current_scope,
    enter_scope,
    leave_scope,
)


class Holder:
    """Stands in for a urllib3 connection: all the scope uses is ``.sock`` (and hashing)."""

    def __init__(self, sock: socket.socket | None):
        self.sock = sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def recv_in_thread(sock: socket.socket) -> tuple[threading.Thread, threading.Event, dict]:
    """Start a thread blocked in ``recv`` on ``sock``; it records what ``recv`` returned."""
    started = threading.Event()
    outcome: dict = {}

    def run() -> None:
        started.set()
        try:
            outcome["data"] = sock.recv(100)
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(2)
    return thread, started, outcome


def test_cancel_is_true_once_then_false() -> None:
    scope = CancelScope("j1")
    assert scope.cancelled is False
    assert scope.reason is None
    assert scope.cancel(CLIENT_GONE) is True
    assert scope.cancelled is True
    assert scope.cancel(DEADLINE) is False
    assert scope.cancel(CLIENT_GONE) is False
    assert scope.reason == CLIENT_GONE  # the first reason stays


def test_only_one_of_many_racing_cancels_wins() -> None:
    scope = CancelScope("j1")
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    lock = threading.Lock()

    def race(reason: str) -> None:
        barrier.wait(2)
        won = scope.cancel(reason)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2)
    assert sorted(wins) == [False] * 7 + [True]
    assert scope.reason in {f"r{i}" for i in range(8)}


def test_a_closed_scope_cannot_be_cancelled() -> None:
    scope = CancelScope("j1")
    scope.close()
    assert scope.cancel(CLIENT_GONE) is False
    assert scope.cancelled is False


def test_sleep_without_cancel_waits() -> None:
    scope = CancelScope()
    started = time.monotonic()
    scope.sleep(0.05)
    assert time.monotonic() - started >= 0.04


def test_sleep_ends_early_when_cancelled_from_another_thread() -> None:
    scope = CancelScope("j1")
    about_to_sleep = threading.Event()
    elapsed: list[float] = []

    def sleeper() -> None:
        about_to_sleep.set()
        started = time.monotonic()
        scope.sleep(30)
        elapsed.append(time.monotonic() - started)

    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    assert about_to_sleep.wait(2)
    assert scope.cancel(DEADLINE) is True
    thread.join(2)
    assert not thread.is_alive()
    assert elapsed and elapsed[0] < 1.0


def test_sleep_after_cancel_returns_at_once() -> None:
    scope = CancelScope()
    scope.cancel(DEADLINE)
    started = time.monotonic()
    scope.sleep(30)
    assert time.monotonic() - started < 0.5


def test_negative_sleep_is_fine() -> None:
    CancelScope().sleep(-1)


def test_cancel_shuts_down_an_attached_socket_and_wakes_recv(pair) -> None:
    a, _b = pair
    scope = CancelScope("j1")
    scope.attach(Holder(a))
    thread, _, outcome = recv_in_thread(a)
    assert scope.cancel(CLIENT_GONE) is True
    thread.join(2)
    assert not thread.is_alive(), "recv was not woken by the cancel"
    assert outcome.get("data") == b"" or "error" in outcome


def test_cancel_shuts_down_every_attached_connection() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        scope = CancelScope("j1")
        for a, _b in pairs:
            scope.attach(Holder(a))
        scope.cancel(DEADLINE)
        for a, _b in pairs:
            a.settimeout(1)
            assert a.recv(10) == b""  # a timeout here would mean the socket was left open
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_close_detaches_so_a_later_cancel_does_not_touch_the_socket(pair) -> None:
    a, b = pair
    scope = CancelScope("j1")
    scope.attach(Holder(a))
    scope.close()
    scope.cancel(CLIENT_GONE)
    # the (pooled) connection still works both ways
    b.sendall(b"ping")
    a.settimeout(1)
    assert a.recv(10) == b"ping"
    a.sendall(b"pong")
    b.settimeout(1)
    assert b.recv(10) == b"pong"


def test_attach_after_close_is_ignored(pair) -> None:
    a, b = pair
    scope = CancelScope("j1")
    scope.close()
    scope.attach(Holder(a))
    scope.cancel(CLIENT_GONE)
    b.sendall(b"still open")
    a.settimeout(1)
    assert a.recv(20) == b"still open"


def test_attach_after_cancel_shuts_down_at_once(pair) -> None:
    a, _b = pair
    scope = CancelScope("j1")
    scope.cancel(DEADLINE)
    scope.attach(Holder(a))
    a.settimeout(1)
    assert a.recv(10) == b""


def test_connections_without_a_socket_are_skipped(pair) -> None:
    a, _b = pair
    scope = CancelScope("j1")
    scope.attach(Holder(None))
    scope.attach(object())
    scope.attach(Holder(a))
    assert scope.cancel(DEADLINE) is True
    a.settimeout(1)
    assert a.recv(10) == b""
    scope.attach(Holder(None))  # after cancel: no error either


def test_cancel_of_an_already_closed_socket_does_not_raise() -> None:
    a, b = socket.socketpair()
    a.close()
    b.close()
    scope = CancelScope("j1")
    scope.attach(Holder(a))
    assert scope.cancel(DEADLINE) is True


def test_scope_context_is_per_thread() -> None:
    scope = CancelScope("j1")
    seen: list = []
    token = enter_scope(scope)
    try:
        assert current_scope() is scope
        thread = threading.Thread(target=lambda: seen.append(current_scope()))
        thread.start()
        thread.join(2)
    finally:
        leave_scope(token)
    assert seen == [None]
    assert current_scope() is None


# -- end to end: requests + CancellableAdapter -------------------------------------

class SilentServer:
    """Accepts connections, reads each request's head, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1/chat/completions"
        self.request_received = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.held.append(conn)
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                continue
            # the client only sends once its socket is in place: cancelling now must reach it
            self.request_received.set()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        for conn in self.held:
            conn.close()
        self.thread.join(2)


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_cancelling_the_scope_ends_a_hung_request(silent: SilentServer) -> None:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", CancellableAdapter())
    scope = CancelScope("j1")
    outcome: dict = {}

    def job() -> None:
        token = enter_scope(scope)
        started = time.monotonic()
        try:
            session.get(silent.url, timeout=10)
            outcome["answered"] = True
        except requests.exceptions.RequestException as exc:
            outcome["error"] = exc
        finally:
            outcome["elapsed"] = time.monotonic() - started
            leave_scope(token)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    try:
        assert silent.request_received.wait(5), "the request never reached the server"
        cancelled_at = time.monotonic()
        assert scope.cancel(CLIENT_GONE) is True
        thread.join(3)
        assert not thread.is_alive(), "the request was not woken by the cancel"
        assert time.monotonic() - cancelled_at < 1.5
        assert "answered" not in outcome
        assert isinstance(outcome["error"], requests.exceptions.ConnectionError)
        assert not isinstance(outcome["error"], requests.exceptions.Timeout)
        assert outcome["elapsed"] < 5
    finally:
        session.close()


def test_a_request_outside_any_scope_is_not_tracked(silent: SilentServer) -> None:
    """Without a scope the connection joins nothing, so an unrelated cancel leaves it alone."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", CancellableAdapter())
    unrelated = CancelScope("other")
    outcome: dict = {}

    def job() -> None:
        try:
            session.get(silent.url, timeout=0.5)
        except requests.exceptions.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    try:
        assert silent.request_received.wait(5)
        unrelated.cancel(CLIENT_GONE)
        thread.join(3)
        assert not thread.is_alive()
        # it ended by its own read timeout, not by a shutdown
        assert isinstance(outcome["error"], requests.exceptions.ReadTimeout)
    finally:
        session.close()
