"""The gunicorn worker class the API runs: gthread, with every request received whole
by the event loop before a thread is given to it, the connections of one client
capped, and request threads reused last-in, first-out.

gthread gives a connection to a request thread as soon as its first bytes arrive,
and the thread then reads the rest of the request from the socket: a client that
sends its head or body slowly holds the thread all along, so a hundred such
clients stop a process. Here the worker's main thread reads every request as a
buffering proxy would, without blocking (``api.request_framing`` finds where it
ends), and a thread gets the connection only once the whole request is in; the
thread's parser then reads those bytes, never the socket
(``api.gunicorn_patches``). Keep-alive connections come back to the main thread
between requests. The main thread bounds, per connection:

- the time to receive the head (``REQUEST_HEADER_TIMEOUT``, from the connection's
  accept or a kept-alive connection's first byte) and the body
  (``REQUEST_BODY_TIMEOUT``, from the end of the head): a request still incomplete
  then is answered 408 and closed; a connection that sent nothing is closed
  silently, as an idle kept-alive one is after ``keepalive`` seconds;
- the head's size (gunicorn's ``limit_request_*``; gunicorn answers 414 or 431)
  and the body's: a ``Content-Length`` over ``MAX_BODY_BYTES`` goes to the app on
  its head alone (it answers 413 without reading a byte of body), a chunked body
  is answered 413 here as soon as its chunks add up to more;
- the request bodies one client has in this process, received or being served: four of
  ``MAX_BODY_BYTES`` in all; a request that would take it past that is answered 429;
- the connections one client holds in this process (``MAX_CONNECTIONS_PER_ADDRESS``,
  ``api.connection_guard``): one more is answered 429 and closed at once. A client
  connecting directly counts from accept to close; behind a trusted proxy
  (``FORWARDED_ALLOW_IPS``) the client named by ``X-Forwarded-For`` counts while
  one of its requests is received and served, and the proxy's own connections do
  not count, since it carries everybody's requests.

In the thread, a write to the client that makes no progress for
``RESPONSE_WRITE_TIMEOUT`` fails (the kernel's ``SO_SNDTIMEO``, set once per
connection, as nginx's ``send_timeout``), so a client that stops reading a response
cannot hold the thread forever. The app may bound one request otherwise: a Python
socket timeout it sets wins while it lasts (a stream does, ``api.stream_socket``).
The client's address (``X-Forwarded-For`` resolved) is the request's ``REMOTE_ADDR``.

Connections that end are closed without blocking the main thread: the write side
is shut, and what the client still sends is read and dropped for up to two
seconds, so the last answer is not cut by a reset (gthread does that wait in its
main thread). TLS, HTTP/2 and the PROXY protocol are not served here; the worker
refuses to start with them (terminate TLS in front).

gthread hands each request to a ``ThreadPoolExecutor``, whose idle threads take
work in turn: at low load every request ran on a cold thread among dozens. Its
``get_thread_pool`` hook takes ``shared.plumbing.threadpool.LifoThreadPool`` instead.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import threading
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

from api import edge_responses
from api.connection_guard import ClientTally, TrustedProxies, client_address, count_key
from api.edge_responses import RequestTimeout, TooManyConnections, TooMuchInFlight
from api.gunicorn_patches import (
    BufferedRequest,
    already_continued,
    buffered_parser,
    read_chunked_body,
)
from api.request_framing import Framing, Limits, RequestFramer
from shared.plumbing.threadpool import LifoThreadPool
from shared.settings import Settings

log = logging.getLogger("aigw.api")
access_log = logging.getLogger("aigw.access")

RECEIVE_SIZE = 65536
LINGER_SECONDS = 2.0  # as gunicorn's close_graceful
LINGER_BYTES = 1024 * 1024  # what a closed client may still send and have dropped (a body refused 413)
STOP_IDLE_SECONDS = 2.0  # a stopping worker keeps idle kept-alive connections this long (gthread's linger)
SCAN_INTERVAL = 0.25  # how often deadlines are checked
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
RETRY_AFTER_CAP = 1  # seconds a client over its connection cap is told to wait
# Request bodies one client may have in this process at once (received, or being served), in
# requests of the largest size: past that, one client's uploads would hold what every client shares.
BODIES_IN_FLIGHT_PER_CLIENT = 4

# A connection's stages in the main thread; SERVING while a request thread has it.
IDLE, HEAD, BODY, SERVING, CLOSING, CLOSED = "idle", "head", "body", "serving", "closing", "closed"


class Connection(TConn):
    def __init__(self, cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)  # leaves the socket non-blocking
        self.data_ready = True  # gthread's handle() must not wait for data in a thread
        self.peer = client[0] if isinstance(client, tuple) else None  # None: a UNIX socket
        self.source = BufferedRequest()
        self.parser = buffered_parser(cfg, self.source, client)
        self.framer: RequestFramer | None = None
        self.stage = HEAD
        self.deadline = 0.0
        self.began = time.monotonic()  # when the request being received began
        self.leftover = b""  # bytes the client sent after the request being served (pipelining)
        self.counted: str | None = None  # the client this connection counts for
        self.counted_per_request = False  # a trusted proxy's connection: counted while a request lasts
        self.client_address = self.peer
        self.close_after = False  # the request was handed over unframed, or on its head alone
        self.held = 0  # body bytes of its request counted against its client's in-flight budget
        self.head = None  # the head of the request a thread serves (api.request_framing.Head)
        self.drained = 0


class GatewayThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = Settings.from_env()  # checked by the master at start (config/gunicorn.conf.py)
        self.limits = Limits.from_gunicorn(self.cfg, settings.max_body_bytes)
        self.trusted = TrustedProxies.parse(settings.forwarded_allow_ips)
        self.counts = ClientTally(settings.max_connections_per_address)  # connections
        self.bodies = ClientTally(BODIES_IN_FLIGHT_PER_CLIENT * settings.max_body_bytes)  # body bytes in flight
        self.header_timeout = settings.request_header_timeout
        self.body_timeout = settings.request_body_timeout
        self.write_timeout = settings.response_write_timeout
        # The kernel's own send timeout (SO_SNDTIMEO), not Python's socket timeout: that one
        # would make the app's non-blocking peek for a gone client (api.disconnect) wait too.
        seconds = int(self.write_timeout)
        self._send_timeout = struct.pack("ll", seconds, int((self.write_timeout - seconds) * 1_000_000))
        self.waiting: dict[Connection, None] = {}  # connections the main thread holds, oldest first
        self._next_scan = 0.0
        self._stop_noted = False
        self._accept_paused_until = 0.0
        self._refused_since_log = 0
        self._refusal_logged_at = 0.0
        self._request = threading.local()  # the client address of the request a thread serves

    @classmethod
    def check_config(cls, cfg, log):
        super().check_config(cfg, log)
        if cfg.is_ssl or cfg.http_protocols != ["h1"] or cfg.proxy_protocol != "off":
            raise RuntimeError("api.web_worker serves plain HTTP/1.1 only: terminate TLS and HTTP/2 in front, "
                               "and leave proxy_protocol off")

    def get_thread_pool(self):
        return LifoThreadPool(self.cfg.threads, name="web")

    def load_wsgi(self):
        super().load_wsgi()
        app = self.wsgi
        current = self._request

        def with_client_address(environ, start_response):
            client = getattr(current, "client", None)
            if client:
                environ["REMOTE_ADDR"] = client
            return app(environ, start_response)

        self.wsgi = with_client_address

    # -- accepting -----------------------------------------------------------
    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self._accept_paused_until:
            enabled = False
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Stopping: the master has closed its copy of the listening sockets; closing ours
            # too lets the kernel refuse new connections at once, instead of holding them in the
            # backlog until this worker has drained (up to the longest stream) and resetting them.
            for listener in self.sockets:
                listener.close()
            self.sockets = []

    def accept(self, listener):
        try:
            sock, address = listener.accept()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors: the connection waits in the backlog; try again in a moment
                # rather than spin on a listener that stays readable.
                log.error("cannot accept a connection", extra={"error": str(error)})
                self._accept_paused_until = time.monotonic() + 0.5
                self.set_accept_enabled(False)
                return
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = Connection(self.cfg, sock, address, listener.getsockname())
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._send_timeout)
        except OSError:
            pass
        if conn.peer is not None and conn.peer not in self.trusted:
            key = count_key(conn.peer)
            if not self.counts.acquire(key):
                self._refuse_connection(conn, key)
                return
            conn.counted = key
        conn.deadline = conn.began + self.header_timeout
        self._receive(conn)

    # -- receiving requests in the main thread --------------------------------
    def _receive(self, conn: Connection) -> None:
        """Wait for the connection's next request, without a thread."""
        conn.framer = RequestFramer(self.limits)
        self.waiting[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if conn.leftover:
            data, conn.leftover = conn.leftover, b""
            self._received(conn, data)
        else:
            self._on_readable(conn)  # the request is often there already: save a trip through the poller

    def _on_readable(self, conn: Connection, _fileobj=None) -> None:
        try:
            data = conn.sock.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)  # the client closed; a request it had begun is abandoned with it
            return
        self._received(conn, data)

    def _received(self, conn: Connection, data: bytes) -> None:
        framer = conn.framer
        outcome = framer.feed(data)
        if conn.stage == IDLE and framer.started:
            conn.stage = HEAD
            conn.began = time.monotonic()
            conn.deadline = conn.began + self.header_timeout
        while True:
            if conn.stage == BODY and framer.head.chunked and not self._hold(conn, framer.body_received):
                return  # refused: its client has too much in flight
            if outcome is Framing.NEED_MORE:
                return
            if outcome is Framing.HEAD:
                outcome = self._head_received(conn)
                if outcome is None:
                    return
            elif outcome is Framing.COMPLETE:
                self._dispatch(conn, framer.request_bytes(), leftover=framer.leftover)
                return
            elif outcome is Framing.UNFRAMED:
                # gunicorn's parser refuses it (or reads to the end of what there is); then close.
                self._dispatch(conn, framer.request_bytes(), close_after=True)
                return
            else:  # TOO_LARGE
                self._refuse(conn, edge_responses.too_large(self.limits.max_body))
                return

    def _head_received(self, conn: Connection) -> Framing | None:
        """Decide on a request by its head; None when it was refused or handed over."""
        head = conn.framer.head
        if conn.peer is not None:
            conn.client_address = client_address(conn.peer, head.forwarded_for, self.trusted)
        if conn.counted is None and conn.peer is not None:  # a trusted proxy's connection
            key = count_key(conn.client_address)
            if not self.counts.acquire(key):
                self._refuse(conn, TooManyConnections(retry_after=RETRY_AFTER_CAP))
                return None
            conn.counted, conn.counted_per_request = key, True
        if head.content_length is not None and head.content_length > self.limits.max_body:
            self._dispatch(conn, conn.framer.head_only(), close_after=True)  # the app answers 413
            return None
        if head.content_length and not self._hold(conn, head.content_length):
            return None
        if head.expects_continue and (head.chunked or head.content_length) and not conn.framer.body_started:
            try:
                conn.sock.send(CONTINUE)
            except OSError:
                pass  # the request's own read or write finds out
        conn.stage = BODY
        outcome = conn.framer.feed(b"")
        if outcome is Framing.NEED_MORE:
            conn.deadline = time.monotonic() + self.body_timeout
        return outcome

    def _hold(self, conn: Connection, size: int) -> bool:
        """Count ``size`` body bytes of the connection's request against its client's budget
        (a body declared whole, or a chunked one as it grows); refuse the request when that
        would take the client past it. False when refused."""
        if conn.counted is None or size <= conn.held:
            return True
        if not self.bodies.acquire(conn.counted, size - conn.held):
            self._refuse(conn, TooMuchInFlight(retry_after=RETRY_AFTER_CAP))
            return False
        conn.held = size
        return True

    def _release(self, conn: Connection) -> None:
        """The connection's request is over: its body no longer counts against its client."""
        if conn.held and conn.counted is not None:
            self.bodies.release(conn.counted, conn.held)
        conn.held = 0

    def _dispatch(self, conn: Connection, data: bytes, *, leftover: bytes = b"", close_after: bool = False) -> None:
        """Give the connection, its request received, to a request thread."""
        self._stop_waiting(conn)
        conn.stage = SERVING
        conn.head = conn.framer.head or conn.framer.refused_head
        conn.framer = None
        conn.leftover = leftover
        conn.close_after = close_after
        conn.source.load(data)
        self.enqueue_req(conn)

    def _stop_waiting(self, conn: Connection) -> None:
        self.waiting.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    # -- back from a request thread --------------------------------------------
    def finish_request(self, conn, fs):
        try:
            keep_alive = fs.result() is True if not fs.cancelled() else False
        except Exception:
            keep_alive = False
        self._release(conn)
        if conn.counted_per_request:
            self._uncount(conn)
        # Anything of the request left unread, or read past, means the parser and the framing
        # disagreed: the next request's start is unknown.
        if (keep_alive and not conn.close_after and not conn.source.unread_bytes
                and not conn.source.overread):
            try:
                conn.sock.setblocking(False)
            except OSError:
                self._close(conn)
                return
            conn.stage = IDLE
            conn.began = time.monotonic()
            conn.deadline = conn.began + (self.cfg.keepalive if self.alive else STOP_IDLE_SECONDS)
            self._receive(conn)
        else:
            self._linger_close(conn)

    # -- in a request thread -----------------------------------------------------
    def handle(self, conn):
        edge_responses.serving(conn.head)  # gunicorn's own refusal of it: in its endpoint's format
        try:
            return super().handle(conn)
        finally:
            edge_responses.serving(None)

    def handle_request(self, req, conn):
        already_continued(req)
        read_chunked_body(req)  # from memory; a malformed body is gunicorn's 400 here, not the app's 500
        self._request.client = conn.client_address
        try:
            return super().handle_request(req, conn)
        except (BlockingIOError, TimeoutError):  # SO_SNDTIMEO passed, or a timeout the app set
            log.info("client stopped reading its response; connection closed",
                     extra={"client": conn.client_address, "timeout_s": self.write_timeout})
            return False
        finally:
            self._request.client = None

    # -- refusing and closing ------------------------------------------------------
    def _refuse_connection(self, conn: Connection, key: str) -> None:
        """Over the cap at accept: answered before its request is read, in OpenAI's format."""
        conn.sock.setblocking(False)
        self._send(conn, edge_responses.response(TooManyConnections(retry_after=RETRY_AFTER_CAP)))
        self._linger_close(conn)
        # One line a second at most: a flood of refusals must not become a flood of logs.
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= 1.0:
            log.warning("connections refused: too many from one client", extra={
                "client": key, "cap": self.counts.cap, "refused": self._refused_since_log})
            self._refusal_logged_at, self._refused_since_log = now, 0

    def _refuse(self, conn: Connection, error) -> None:
        """Answer a request being received, in its endpoint's format, and close."""
        head = conn.framer.head if conn.framer else None
        wire = edge_responses.wire_for(head.path, head.anthropic_version) if head else "openai"
        request_id = edge_responses.request_id(head.request_id if head else None)
        self._stop_waiting(conn)
        self._send(conn, edge_responses.response(error, wire=wire, request_id_sent=request_id))
        fields = {"request_id": request_id, "status": error.status, "error_code": error.code,
                  "client": conn.client_address,
                  "duration_ms": round((time.monotonic() - conn.began) * 1000, 2)}
        if head is not None:
            fields.update(method=head.method.decode("latin-1"), path=head.path)
        access_log.info("request", extra=fields)
        self._linger_close(conn)

    @staticmethod
    def _send(conn: Connection, data: bytes) -> None:
        try:
            conn.sock.send(data)  # non-blocking: a client whose buffers are full loses the answer
        except OSError:
            pass

    def _linger_close(self, conn: Connection) -> None:
        """Close without cutting the last answer: shut the write side, then drop what the
        client still sends until it closes too, for a moment at most."""
        self._stop_waiting(conn)
        self._uncount(conn)
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.stage = CLOSING
        conn.framer = None
        conn.drained = 0
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.waiting[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_closing_readable, conn))

    def _on_closing_readable(self, conn: Connection, _fileobj=None) -> None:
        try:
            data = conn.sock.recv(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained >= LINGER_BYTES:
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if conn.stage == CLOSED:
            return
        self._stop_waiting(conn)
        self._uncount(conn)
        conn.stage = CLOSED
        conn.close()
        self.nr_conns -= 1

    def _uncount(self, conn: Connection) -> None:
        self._release(conn)
        if conn.counted is not None:
            self.counts.release(conn.counted)
            conn.counted, conn.counted_per_request = None, False

    # -- deadlines (gthread's run loop calls these after every turn) -----------------
    def murder_pending(self):
        now = time.monotonic()
        if not self.alive and not self._stop_noted:
            self._stop_noted = True  # stopping: idle connections get a moment for a request, no more
            for conn in self.waiting:
                if conn.stage == IDLE or (conn.stage == HEAD and not conn.framer.started):
                    conn.deadline = min(conn.deadline, now + STOP_IDLE_SECONDS)
        if now < self._next_scan:
            return
        self._next_scan = now + SCAN_INTERVAL
        for conn in [c for c in self.waiting if c.deadline <= now]:
            self._expire(conn)

    def murder_keepalived(self, force=False):
        if force:
            for conn in list(self.waiting):
                self._close(conn)

    def _expire(self, conn: Connection) -> None:
        if conn.stage in (IDLE, CLOSING) or (conn.stage == HEAD and not conn.framer.started):
            self._close(conn)  # nothing asked, nothing to answer
        elif conn.stage == HEAD:
            self._refuse(conn, RequestTimeout(
                f"The request's head did not arrive within {self.header_timeout:g} s."))
        elif conn.stage == BODY:
            self._refuse(conn, RequestTimeout(
                f"The request body did not arrive within {self.body_timeout:g} s."))
