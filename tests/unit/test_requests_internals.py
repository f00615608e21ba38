"""The requests and urllib3 internals the upstream client relies on, checked against the
installed versions (both pinned in requirements.txt): each test fails if an upgrade
changes one.

- ``workers.cancel.CancellableAdapter`` subclasses requests' ``HTTPAdapter``: it rebuilds
  ``build_response`` without the cookie jar, remembers pools per origin (a pool urllib3
  has closed has ``pool`` set to ``None``), and gives urllib3's ``PoolManager`` its own
  connection pool classes through ``pool_classes_by_scheme``.
- ``workers.upstream._read_whole`` fills ``Response._content`` in one read and marks it
  consumed (``_content_consumed``), as ``Response.content`` does.
- ``workers.upstream_stream`` sets a stream's idle timeout on ``response.raw.connection.sock``.
"""

from __future__ import annotations

import http.server
import inspect
import re
import socket
import threading

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.poolmanager import PoolManager

from workers.cancel import CancellableAdapter, TrackedHTTPConnectionPool


class _Answers(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def assigned_attributes(function) -> set[str]:
    return set(re.findall(r"^\s+response\.(\w+) = ", inspect.getsource(function), re.MULTILINE))


def test_build_response_sets_what_ours_sets_and_only_cookies_besides():
    theirs = inspect.getsource(HTTPAdapter.build_response)
    assert assigned_attributes(HTTPAdapter.build_response) == assigned_attributes(CancellableAdapter.build_response)
    assert "extract_cookies_to_jar(response.cookies, req, resp)" in theirs  # the one step ours leaves out
    assert "response = Response()" in theirs


def test_the_adapter_hooks_ours_override_keep_their_signatures():
    for name in ("build_response", "get_connection_with_tls_context", "cert_verify", "proxy_manager_for"):
        theirs, ours = (inspect.signature(getattr(cls, name)) for cls in (HTTPAdapter, CancellableAdapter))
        assert list(theirs.parameters) == list(ours.parameters), name
    assert "self.poolmanager = PoolManager(" in inspect.getsource(HTTPAdapter.init_poolmanager)


def test_urllib3_builds_pools_from_pool_classes_by_scheme():
    assert "self.pool_classes_by_scheme[scheme]" in inspect.getsource(PoolManager._new_pool)
    manager = PoolManager()
    manager.pool_classes_by_scheme = {"http": TrackedHTTPConnectionPool}
    assert type(manager.connection_from_url("http://127.0.0.1:9/")) is TrackedHTTPConnectionPool


def test_a_closed_urllib3_pool_has_no_pool():
    pool = HTTPConnectionPool("127.0.0.1", 9)
    assert pool.pool is not None
    pool.close()
    assert pool.pool is None


def test_response_content_is_what_read_whole_stores(server):
    with requests.Session() as session:
        session.mount("http://", CancellableAdapter())
        response = session.get(server, stream=True, timeout=5)
        assert response._content is False and response._content_consumed is False  # nothing read yet
        response._content = response.raw.read(decode_content=True)  # as workers.upstream._read_whole
        response._content_consumed = True
        assert response.content == b'{"ok": true}' and response.json() == {"ok": True}


def test_a_stream_s_socket_is_reached_through_the_raw_response(server):
    with requests.Session() as session:
        session.mount("http://", CancellableAdapter())
        response = session.get(server, stream=True, timeout=5)
        assert isinstance(response.raw, urllib3.HTTPResponse)
        assert isinstance(response.raw.connection.sock, socket.socket)
        response.close()
