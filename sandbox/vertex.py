"""Deterministic stand-in for Google Vertex AI: OAuth2 token endpoint, Gemini and text embeddings.

It speaks Vertex's paths and JSON so the real adapter (and google-auth) can be tested end to end.
At start it generates an RSA key for one service account; ``--write-credentials`` writes that
account's JSON key file, whose ``token_uri`` points here. Model calls need a bearer token this
server issued and that has not expired. It is NOT a model: answers are "Sandbox reply: " + the last
user text, steered by the same ``[[sandbox ...]]`` directives as ``sandbox.provider``, plus
``tool=<name>``, which answers with a functionCall.

This module is the HTTP server and entry point; ``sandbox.vertex_auth`` holds the service account and
its tokens, ``sandbox.vertex_answers`` the request checks and answer building.

Run: python -m sandbox.vertex [--host 127.0.0.1] [--port 0] [--write-credentials PATH] [--token-ttl S]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import threading
import time
from collections import deque
from urllib.parse import parse_qs, urlsplit

from sandbox import serving
from sandbox.vertex_answers import embedding_predictions, gemini_responses, read_gemini
from sandbox.vertex_auth import ServiceAccount

LABEL = "VERTEX STAND-IN: canned answers, not Google"
MODEL_PATH = re.compile(r"/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+)"
                        r":(generateContent|streamGenerateContent|predict)")
LOG_SIZE = 500
MAX_KEYS = 100_000
MAX_BODY = 32 * 1024 * 1024
HANG_TIMEOUT = 300.0
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class VertexServer(serving.StandinServer):

    def __init__(self, address, *, token_ttl: float = 3600, credentials_path: str | None = None):
        super().__init__(address, VertexHandler)
        self.hang_timeout = HANG_TIMEOUT
        self.account = ServiceAccount(token_ttl)
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.calls: deque = deque(maxlen=LOG_SIZE)
        if credentials_path:
            self.account.write_key_file(credentials_path, self.base_url, self.token_uri)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def record_call(self, entry: dict, key: str) -> int:
        with self.lock:
            count = self.attempts.pop(key, 0) + 1  # re-insert so eviction drops the least recent key
            self.attempts[key] = count
            if len(self.attempts) > MAX_KEYS:
                del self.attempts[next(iter(self.attempts))]
            self.calls.append(entry)
        return count


class VertexHandler(serving.JSONHandler):
    json_content_type = "application/json; charset=UTF-8"
    server: VertexServer

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the stand-in cannot frame the next request
            return self._error(413, "send a body of at most 32 MiB, with a Content-Length")
        raw = self.rfile.read(length) if length else b""
        match = MODEL_PATH.fullmatch(url.path)
        routes = {"/token": "POST", "/_vertex/calls": "GET", "/_vertex/tokens": "GET"}
        try:
            if match is None and url.path not in routes:
                self._error(404, f"no such path: {url.path}")
            elif (routes.get(url.path) or "POST") != method:
                self._error(405, f"{method} not allowed on {url.path}")
            elif url.path == "/token":
                self._send_json(*self.server.account.grant(raw, self.server.token_uri))
            elif url.path == "/_vertex/calls":
                with self.server.lock:
                    self._send_json(200, {"calls": [dict(c) for c in self.server.calls]})
            elif url.path == "/_vertex/tokens":
                self._send_json(200, {"issued": self.server.account.issued})
            else:
                self._model_call(url.path, url.query, match.groups(), raw)
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a stand-in bug: answer 500 rather than drop the connection
            self._error(500, f"stand-in internal error: {exc!r}")

    def _model_call(self, path: str, query: str, groups: tuple, raw: bytes) -> None:
        project, location, model, method = groups
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        authorized = scheme.lower() == "bearer" and self.server.account.token_valid(token.strip())
        key = self.headers.get("X-Request-Id") or hashlib.sha256(raw).hexdigest()
        attempt = self.server.record_call({  # never the token itself
            "path": path, "project": project, "location": location, "model": model, "method": method,
            "authorized": authorized, "request_id": self.headers.get("X-Request-Id"), "time": time.time()}, key)
        if not authorized:
            return self._error(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                    "token, login cookie or other valid authentication credential.")
        if method == "streamGenerateContent" and parse_qs(query).get("alt") != ["sse"]:
            return self._error(400, "the stand-in streams only with ?alt=sse")
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            return self._error(400, f"Invalid JSON payload received. {exc}")
        if method == "predict":
            return self._predict(body, attempt)
        try:
            prompt = read_gemini(body, model)
        except ValueError as exc:
            return self._error(400, str(exc))
        if self._inject_fault(prompt["opts"], attempt):
            return None
        response_id = hashlib.sha256(raw).hexdigest()[:24]
        stream = method == "streamGenerateContent"
        responses = gemini_responses(prompt, model, response_id, stream=stream)
        if not stream:
            return self._send_json(200, responses[0])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        error_after = prompt["opts"].get("error_after")
        for index, response in enumerate(responses):  # one SSE event per word, each in its own HTTP chunk
            # error_after: a failure once the stream has begun can only come in-band, as an event holding
            # Google's error body (the shape of _error's), which workers.providers.vertex reads as a failure.
            if index == error_after:
                response = {"error": {"code": 500, "message": "stand-in injected a mid-stream error",
                                      "status": STATUS_NAMES[500]}}
            event = f"data: {json.dumps(response)}\r\n\r\n".encode()
            self.wfile.write(f"{len(event):X}\r\n".encode() + event + b"\r\n")
            if index == error_after:
                break
        self.wfile.write(b"0\r\n\r\n")

    def _predict(self, body: dict, attempt: int) -> None:
        try:
            predictions, opts = embedding_predictions(body)
        except ValueError as exc:
            return self._error(400, str(exc))
        if not self._inject_fault(opts, attempt):
            self._send_json(200, {"predictions": predictions})

    def _inject_fault(self, opts: dict, attempt: int) -> bool:
        """Apply a directive as sandbox.provider does; True when the call has been answered (or not)."""
        if "delay_ms" in opts:
            time.sleep(opts["delay_ms"] / 1000)
        if "times" in opts and attempt > opts["times"]:
            return False
        if opts.get("hang"):  # answer nothing until the client gives up and closes (or hang_timeout)
            self.connection.settimeout(self.server.hang_timeout)
            with contextlib.suppress(OSError):
                while self.connection.recv(4096):
                    pass
        if opts.get("hang") or opts.get("close"):
            self.close_connection = True
            return True
        if "fail" in opts:
            extra = {"Retry-After": opts["retry_after"]} if "retry_after" in opts else None
            self._error(opts["fail"], f"stand-in injected {opts['fail']}", extra)
            return True
        return False

    def _error(self, status: int, message: str, headers=None) -> None:
        error = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
        self._send_json(status, {"error": error}, headers)


# --- entry points -------------------------------------------------------------------------------

def make_server(host: str = "127.0.0.1", port: int = 0, *, credentials_path: str | None = None,
                token_ttl: float = 3600) -> VertexServer:
    return VertexServer((host, port), token_ttl=token_ttl, credentials_path=credentials_path)


def serve_in_thread(host: str = "127.0.0.1", port: int = 0, *, credentials_path: str | None = None,
                    token_ttl: float = 3600) -> tuple[VertexServer, str]:
    """Start a server on a daemon thread; stop it with ``server.stop()``."""
    return serving.serve_in_thread(make_server(host, port, credentials_path=credentials_path, token_ttl=token_ttl),
                                   "vertex-standin")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.vertex", description=LABEL)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--write-credentials", metavar="PATH", help="write the service-account JSON key here")
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="access token lifetime in seconds")
    args = parser.parse_args(argv)
    if args.token_ttl <= 0:
        parser.error("--token-ttl must be positive")
    server = make_server(args.host, args.port, credentials_path=args.write_credentials, token_ttl=args.token_ttl)
    return serving.serve_until_signalled(server, LABEL, "vertex stand-in")


if __name__ == "__main__":
    raise SystemExit(main())
