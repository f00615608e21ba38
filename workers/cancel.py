"""Cancelling a job's upstream call from another thread.

A thread cannot be killed, and a job blocked reading a provider's answer does
not look at flags. What does wake it is its socket being shut down. Each job
runs inside a ``CancelScope``; every HTTP connection the job uses attaches
itself to the scope while the job runs, so the worker's monitor thread can
close exactly that job's connections when its client has gone or its deadline
has passed. The job then fails fast instead of paying for an answer nobody reads.
"""

from __future__ import annotations

import contextvars
import socket
import threading
from collections.abc import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.errors import DeadlineExceeded, GatewayError, RequestCancelled, ServiceUnavailable
from workers.http_headers import ProviderResponse

DEADLINE = "deadline"
CLIENT_GONE = "client_gone"
HARD_TIMEOUT = "hard_timeout"
SHUTDOWN = "shutdown"


def cancelled_error(scope: CancelScope) -> GatewayError:
    """What a cancelled job answers (mostly to nobody: its client is gone or gave up)."""
    if scope.reason == CLIENT_GONE:
        return RequestCancelled()
    if scope.reason == SHUTDOWN:
        return ServiceUnavailable("The worker handling this request is shutting down.")
    return DeadlineExceeded()


class CancelScope:
    def __init__(self, job_id: str = ""):
        self.job_id = job_id
        self.deadline: float | None = None  # epoch seconds; the job sets it
        self.reason: str | None = None
        self.upstream_attempts = 0  # calls started: 0 means the provider never saw the request
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._connections: set = set()
        self._closed = False
        self.on_request_sent: Callable[[], None] | None = None  # once, when a request is first on the wire

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str) -> bool:
        """Cancel once; shut down the sockets in use. True if this call cancelled it."""
        with self._lock:
            if self._event.is_set() or self._closed:
                return False
            self.reason = reason
            self._event.set()
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)
        return True

    def sleep(self, seconds: float) -> None:
        """A sleep that ends early when the scope is cancelled (tenacity's waits use it)."""
        self._event.wait(max(0.0, seconds))

    def attach(self, connection) -> None:
        with self._lock:
            if self._closed:
                return
            self._connections.add(connection)
            cancelled = self._event.is_set()
        if cancelled:
            _shutdown(connection)

    def close(self) -> None:
        """The job is over: its (pooled, reusable) connections are no longer its own."""
        with self._lock:
            self._closed = True
            self._connections.clear()


_current: contextvars.ContextVar[CancelScope | None] = contextvars.ContextVar("aigw_cancel_scope",
                                                                                default=None)


def current_scope() -> CancelScope | None:
    return _current.get()


def enter_scope(scope: CancelScope) -> contextvars.Token:
    return _current.set(scope)


def leave_scope(token: contextvars.Token) -> None:
    _current.reset(token)


def _shutdown(connection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on this socket
    except OSError:
        pass  # already closed


class _Tracked:
    """Mixin: a connection joins the running job's scope whenever it sends a request. Its
    answers' headers are read by ``workers.http_headers`` (for these connections only)."""

    response_class = ProviderResponse

    def request(self, *args, **kwargs):
        scope = _current.get()
        if scope is not None:
            scope.attach(self)
        sent = super().request(*args, **kwargs)
        if scope is not None and scope.on_request_sent is not None:
            hook, scope.on_request_sent = scope.on_request_sent, None
            hook()  # while the provider works on the request
        return sent

    def connect(self):
        # A plain-HTTP connection attaches before its socket exists (urllib3 connects
        # inside request()); a cancel in that gap found nothing to shut down.
        super().connect()
        scope = _current.get()
        if scope is not None and scope.cancelled:
            _shutdown(self)


class TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class TrackedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = TrackedHTTPConnection


class TrackedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = TrackedHTTPSConnection


_POOLS = {"http": TrackedHTTPConnectionPool, "https": TrackedHTTPSConnectionPool}


class CancellableAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections can be shut down by their job's scope."""

    def build_response(self, req, resp):
        """requests' own, without reading the answer's cookies into a jar: the gateway keeps
        no provider cookies, and parsing them cost time on every call."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = requests.structures.CaseInsensitiveDict(resp.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url
        response.request = req
        response.connection = self
        return response

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        """requests works out the connection pool on every call (parsing the URL, choosing
        the proxy, building the pool's key); a model's origin, TLS settings and proxy never
        change, so once per combination is enough. A pool closed meanwhile is looked up afresh."""
        scheme, _, netloc = request.url.split("/", 3)[:3]
        key = (scheme.lower(), netloc, verify, cert, tuple((proxies or {}).items()))
        try:
            pool = self._pools_by_origin.get(key)
        except TypeError:  # a setting that cannot be a key (a list): no shortcut
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        if pool is None or pool.pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            self._pools_by_origin[key] = pool
        return pool

    def cert_verify(self, conn, url, verify, cert):
        # Settles the pool's TLS settings (and looks the CA bundle up on disk): once per pool.
        if getattr(conn, "_aigw_tls", None) != (verify, cert):
            super().cert_verify(conn, url, verify, cert)
            conn._aigw_tls = (verify, cert)

    def init_poolmanager(self, *args, **kwargs):
        self._pools_by_origin: dict[tuple, object] = {}
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
