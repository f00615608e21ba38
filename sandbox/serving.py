"""What the stand-in servers share: a threaded HTTP/1.1 server, JSON replies, and
running it as a process (until SIGTERM) or on a thread (for in-process tests)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address):
        # Clients vanishing mid-request is routine here (close/hang/timeouts); stay quiet about it.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so every response carries Content-Length
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    json_content_type = "application/json"

    def log_message(self, format, *args):  # per-request stderr lines cost time; say nothing
        pass

    def _send_json(self, status: int, payload, headers=None, reason: str | None = None) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", self.json_content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


Server = TypeVar("Server", bound=StandinServer)


def serve_in_thread(server: Server, name: str) -> tuple[Server, str]:
    """Serve on a daemon thread; stop it with ``server.stop()``."""
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server, server.base_url


def serve_until_signalled(server: StandinServer, banner: str, listening: str) -> int:
    """Serve in this process until SIGTERM or SIGINT; the banner goes to stderr, the
    listening line (with the URL, which launchers read) to stdout."""
    def _exit(signum, frame):
        raise SystemExit(0)  # unwinds serve_forever so the finally below closes the socket

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    print(banner, file=sys.stderr, flush=True)
    print(f"{listening} listening on {server.base_url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
