"""A loopback HTTP server that records every request a CLI sends and answers just plausibly
enough for the CLI to carry on: Anthropic Messages (streamed or whole), ``count_tokens``, OpenAI
Responses (streamed or whole), model lists, and ``HEAD /``.

It is an instrument, not a stand-in for a provider: it exists to learn what Claude Code and Codex
send (``python -m tests.clients.record`` writes the fixtures) and to check the harness runs them.
It also serves as the CLIs' HTTP(S) proxy, so a request that would leave loopback is recorded
(``CONNECT host:443``) and refused instead of leaving.

Scripting: give ``tool_call=ToolCall(name, arguments)``; a model request that offers a tool of that
name, and whose newest turn is not a tool result, is answered with a call of it; a request whose
newest turn is a tool result is answered "Tool said: <the result>". Faults: ``fail(path, status,
times)`` answers the next ``times`` requests to ``path`` with ``status``; ``omit_events`` leaves
those SSE events out of every stream (to learn which ones a CLI needs); ``stream_failure`` ends every
stream after its third event with an ``error`` event (or ``response.failed``).

What it answers, in each wire format, is ``tests.clients.capture_replies``.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import zlib
from urllib.parse import urlsplit

from sandbox import serving
from tests.clients.capture_replies import (
    MODEL_IDS,
    ToolCall,
    anthropic_events,
    anthropic_message,
    anthropic_newest_is_tool_result,
    anthropic_tool_names,
    anthropic_tool_result_text,
    failure_event,
    models_payload,
    reply_text,
    responses_events,
    responses_tool_result_text,
    responses_tools,
)

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization", "cookie", "private-token",
                            "job-token", "openai-api-key"})
REDACTED = "<redacted>"


class CaptureServer(serving.StandinServer):

    def __init__(self, tool_call: ToolCall | None = None, *, token: str | None = None,
                 omit_events: frozenset[str] = frozenset(), stream_failure: str | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        super().__init__((host, port), CaptureHandler)
        self.tool_call = tool_call
        self.token = token  # when set, every request must carry it (Bearer or x-api-key), else 401
        self.omit_events = omit_events  # SSE event names left out of every stream: what does a CLI need?
        self.stream_failure = stream_failure  # "error" or "response.failed": every stream fails after 3 events
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.faults: dict[str, list] = {}  # path -> [status, remaining, headers]

    def __enter__(self) -> CaptureServer:
        serving.serve_in_thread(self, "cli-capture")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def proxy_url(self) -> str:
        return self.base_url

    def fail(self, path: str, status: int, times: int = 1_000_000, headers: dict | None = None) -> None:
        """Answer the next ``times`` requests whose path (query excluded) is ``path`` with ``status``
        (an error body in the path's format) and ``headers`` (``Retry-After``, say)."""
        with self.lock:
            self.faults[path] = [status, times, dict(headers or {})]

    def take_fault(self, path: str) -> tuple[int, dict] | None:
        with self.lock:
            fault = self.faults.get(path)
            if not fault or fault[1] <= 0:
                return None
            fault[1] -= 1
            return fault[0], fault[2]

    def record(self, entry: dict) -> dict:
        with self.lock:
            entry["seq"] = len(self.records)
            self.records.append(entry)
        return entry

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict]:
        """What was recorded so far (copies), optionally only one path (query excluded) or method."""
        with self.lock:
            found = list(self.records)
        return [json.loads(json.dumps(r)) for r in found
                if (path is None or r["path"] == path) and (method is None or r["method"] == method)]

    def egress(self) -> list[dict]:
        """Requests that tried to leave loopback through the proxy (CONNECT, or an absolute URL)."""
        return [r for r in self.requests() if r.get("proxied")]


class CaptureHandler(serving.JSONHandler):
    server: CaptureServer

    def do_HEAD(self):
        self._handle("HEAD")

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_CONNECT(self):
        # A CLI honouring HTTPS_PROXY asks to tunnel to a host that is not loopback: record, refuse.
        self.server.record({"method": "CONNECT", "target": self.path, "path": self.path, "query": "",
                            "headers": self._headers(), "body": None, "proxied": True, "status": 403})
        self.close_connection = True
        self._send_json(403, {"error": {"message": "capture server: no traffic leaves loopback"}})

    # -- request -----------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        proxied = bool(url.scheme)  # an absolute URL: a plain-HTTP request through the proxy
        raw = self._read_body()
        entry = {"method": method, "target": self.path, "path": url.path, "query": url.query,
                 "headers": self._headers(), "body": decode_body(raw, self.headers), "time": time.time()}
        if proxied:
            entry.update(proxied=True, status=403)
            self.server.record(entry)
            self.close_connection = True
            return self._send_json(403, {"error": {"message": "capture server: no traffic leaves loopback"}})
        fault = self.server.take_fault(url.path)
        if not fault and not self._authorized():
            fault = (401, {})
        entry["status"] = fault[0] if fault else 200
        self.server.record(entry)
        anthropic = url.path.startswith("/v1/messages") or bool(self.headers.get("anthropic-version"))
        if fault:
            return self._error(anthropic, fault[0], f"capture server: injected {fault[0]}", fault[1])
        body = entry["body"] if isinstance(entry["body"], dict) else {}
        if method == "HEAD" or (method == "GET" and url.path == "/"):
            return self._empty(200)
        if method == "GET" and url.path.rstrip("/") in ("/v1/models", "/models"):
            return self._send_json(200, models_payload(anthropic))
        if method == "POST" and url.path == "/v1/messages/count_tokens":
            return self._send_json(200, {"input_tokens": estimate_tokens(body)})
        if method == "POST" and url.path == "/v1/messages":
            return self._messages(body)
        if method == "POST" and url.path.endswith("/responses"):
            return self._responses(body)
        entry["status"] = 404
        return self._error(anthropic, 404, f"capture server: no such path {url.path}")

    def _headers(self) -> list[list[str]]:
        return [[name, redact(name, value)] for name, value in self.headers.items()]

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None or self.command == "HEAD":
            return True
        given = {self.headers.get("Authorization", ""), "Bearer " + self.headers.get("x-api-key", "")}
        return f"Bearer {token}" in given

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- answers -----------------------------------------------------------------------------
    def _messages(self, body: dict) -> None:
        model = body.get("model") or MODEL_IDS[0]
        call = self._tool_call(anthropic_tool_names(body.get("tools")), anthropic_newest_is_tool_result(body))
        text = reply_text(anthropic_tool_result_text(body))
        events = anthropic_events(model, text, call, estimate_tokens(body))
        if body.get("stream") is True:
            return self._sse(events)
        return self._send_json(200, anthropic_message(model, text, call, estimate_tokens(body)))

    def _responses(self, body: dict) -> None:
        model = body.get("model") or MODEL_IDS[1]
        tools = responses_tools(body)
        result = responses_tool_result_text(body.get("input"))
        call = self._tool_call(set(tools), result is not None)
        kind = tools.get(call.name, "function") if call else None
        events = responses_events(model, reply_text(result), call, kind, estimate_tokens(body))
        if body.get("stream") is True:
            return self._sse(events)
        return self._send_json(200, events[-1][1]["response"])

    def _tool_call(self, offered: set[str], answered: bool) -> ToolCall | None:
        call = self.server.tool_call
        return call if call and call.name in offered and not answered else None

    def _sse(self, events: list[tuple[str, dict]]) -> None:
        if self.server.stream_failure:
            events = events[:3] + [failure_event(self.server.stream_failure, events[0][1])]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, data in events:
            if name in self.server.omit_events:
                continue
            chunk = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _error(self, anthropic: bool, status: int, message: str, headers: dict | None = None) -> None:
        if anthropic:
            kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                    429: "rate_limit_error"}.get(status, "api_error")
            return self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)
        kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
        code = "rate_limit_exceeded" if status == 429 else None
        return self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}},
                               headers)


def redact(name: str, value: str) -> str:
    """A header value as recorded: a credential keeps only its scheme (``Bearer <redacted>``)."""
    if name.lower() not in SECRET_HEADERS:
        return value
    scheme, _, rest = value.partition(" ")
    return f"{scheme} {REDACTED}" if rest and scheme.isalpha() and len(scheme) < 16 else REDACTED


# --- bodies ---------------------------------------------------------------------------------------

def decode_body(raw: bytes, headers) -> object:
    """A request body as recorded: its JSON, else its text, else base64 (after gzip/deflate)."""
    if not raw:
        return None
    encoding = (headers.get("Content-Encoding") or "").lower()
    try:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
    except (OSError, zlib.error):
        return {"_base64": base64.b64encode(raw).decode(), "_encoding": encoding}
    if encoding not in ("", "identity", "gzip", "deflate"):
        return {"_base64": base64.b64encode(raw).decode(), "_encoding": encoding}
    try:
        return json.loads(raw)
    except ValueError:
        try:
            return {"_text": raw.decode()}
        except UnicodeDecodeError:
            return {"_base64": base64.b64encode(raw).decode()}


def estimate_tokens(body: dict) -> int:
    return max(1, len(json.dumps(body)) // 4)
