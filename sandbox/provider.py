"""Deterministic stand-in model provider speaking the OpenAI and Anthropic wire formats.

`make run` uses it when no real provider key is configured, the integration tests use it as
the upstream and the benchmark uses it as the baseline. It is NOT a model: every answer is
"Sandbox reply: " + the text of the last user message. sandbox/README.md documents it for test writers.

    POST /v1/chat/completions, /v1/messages    chat; `"stream": true` answers Server-Sent Events
    POST /v1/responses                         OpenAI's Responses API, whole and streamed (provider_responses);
    GET, DELETE /v1/responses/{id}             responses stored unless `store` is false (in memory, bounded)
    POST /v1/messages/count_tokens             Anthropic's {"input_tokens": N}
    POST /v1/completions                       legacy (fill-in-the-middle): "Sandbox completion of: <last 5
                                               prompt words> [before: <first 3 suffix words>]", streams too
    POST /v1/embeddings                        8 (or `dimensions`) floats in [-1, 1] from sha256 of each input
    GET  /v1/models
    GET  /_sandbox/calls?key=K  /_sandbox/log[?key=K&path=P]  /_sandbox/hangs  /_sandbox/streams
    POST /_sandbox/reset
    POST /_sandbox/outage {"status": 500, "retry_after": 2, "times": 3}    every model call answers that status
         (with that Retry-After; the next `times` calls only, if given) until {"status": null} or a reset

Every path takes a query string (Anthropic's SDK adds `?beta=true`). The log keeps each request's
method, path, query, headers (credentials redacted) and body (bounded: sandbox.provider_state).

The gateway never lets a client choose the upstream URL, so tests steer the sandbox with a
directive inside the last user message (or the prompt, or an embedding input; removed from the
reply and the token counts; syntax in sandbox.provider_directives):

    [[sandbox fail=503 times=2 retry_after=1 delay_ms=50]]    [[sandbox hang]]    [[sandbox close]]
    [[sandbox tool=search]]  call the request's tool `search` with {"query": <the reply text>}
    [[sandbox tool=Bash args={"command": "echo hi"}]]  call it with these arguments (sandbox.provider_script)
    [[sandbox chunk_delay_ms=20 silence_ms=500 fail_after=3 error_after=3]]    streams only
    [[sandbox words=40000]]  chat: the reply repeats the message's words until it has that many (up to 1,000,000)

`times` bounds every fault (fail, hang, close, fail_after, error_after); the delays always apply.
A request whose newest turn is a tool result answers "Sandbox reply: tool said <the result>".
Reasoning (`reasoning_effort`, `reasoning.effort`, Anthropic `thinking`) adds a deterministic thought.
Anthropic: a `role: "system"` message is refused unless `anthropic-beta` names
mid-conversation-system-2026-04-07, or the model id is one it treats as current (claude-opus-5*,
claude-opus-4-8*, claude-sonnet-4-5*: sandbox.provider_logic.check_anthropic_roles).

Run: python -m sandbox.provider [--host 127.0.0.1] [--port 0] [--latency-ms 0] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from urllib.parse import urlsplit

from sandbox import provider_admin as admin
from sandbox import provider_faults as faults
from sandbox import provider_responses_api as responses_api
from sandbox import serving
from sandbox.provider_admin import MODEL_ID
from sandbox.provider_errors import ANTHROPIC_ERRORS, REASONS, error_payload
from sandbox.provider_faults import HANG_TIMEOUT
from sandbox.provider_logic import (
    EMBEDDING_DIMENSIONS,
    INT_KEYS,
    MAX_DIMENSIONS,
    TOOL_NAME_RE,
    RequestError,
    anthropic_betas,
    chat_answer,
    completion_answer,
    count_tokens,
    cut_reply,
    embed,
    embedding_texts,
    embeddings_payload,
    make_reply,
    parse_directive,
    read_prompt,
    text_of,
    tool_results,
)
from sandbox.provider_responses import Turn
from sandbox.provider_state import LOG_SIZE, CallLog, ResponseStore
from sandbox.provider_stream import (
    Answer,
    StreamRun,
    anthropic_error_event,
    anthropic_events,
    anthropic_payload,
    chat_events,
    completion_events,
    completion_payload,
    openai_chat_payload,
    openai_error_event,
)

# The public API. The server and the model-call path live here; the rest beside it, re-exported here:
# request -> answer logic in provider_logic (directives: provider_directives), JSON bodies and SSE events
# in provider_stream, faults and the outage in provider_faults, error bodies in provider_errors, the
# plain and /_sandbox/* endpoints in provider_admin, the Responses API in provider_responses(_api).
__all__ = [
    "ANTHROPIC_ERRORS", "EMBEDDING_DIMENSIONS", "HANG_TIMEOUT", "INT_KEYS", "LABEL", "LOG_SIZE",
    "MAX_BODY", "MAX_DIMENSIONS", "MAX_KEYS", "MODEL_ID", "REASONS", "SECRET_HEADERS", "TOOL_NAME_RE",
    "SandboxHandler", "SandboxServer", "chat_answer", "completion_answer", "count_tokens", "cut_reply", "embed",
    "embedding_texts", "embeddings_payload", "main", "make_reply", "make_server", "parse_directive", "read_prompt",
    "serve_in_thread", "text_of", "tool_results",
]

LABEL = "SANDBOX PROVIDER: canned deterministic answers, not a real model"
MAX_KEYS = 100_000  # bound the attempt counters so a long `make run` cannot grow without limit
MAX_BODY = 32 * 1024 * 1024
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})
RESPONSE_PATH_RE = re.compile(r"/v1/responses/([A-Za-z0-9_-]{1,128})")


# --- HTTP server ------------------------------------------------------------------------------

class SandboxServer(serving.StandinServer):

    def __init__(self, address, latency_ms: int = 0, api_key: str | None = None):
        super().__init__(address, SandboxHandler)
        self.latency_ms = latency_ms
        self.api_key = api_key
        self.hang_timeout = HANG_TIMEOUT  # tests may shorten it
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.log = CallLog()
        self.hangs: deque = deque(maxlen=LOG_SIZE)
        self.streams: deque = deque(maxlen=LOG_SIZE)
        self.responses = ResponseStore()
        self.outage: dict | None = None  # POST /_sandbox/outage (sandbox.provider_faults)

    def record_call(self, path: str, key: str, headers, stream: bool = False, *, method: str = "POST",
                    query: str = "", body: bytes = b"") -> int:
        """Count and log one call; return the attempt number for its key."""
        entry = {
            "method": method, "path": path, "query": query, "key": key, "time": time.time(), "stream": stream,
            "headers": {
                name.lower(): f"<redacted len={len(value)}>" if name.lower() in SECRET_HEADERS else value
                for name, value in headers.items()
            },
        }
        with self.lock:
            count = self.counts.pop(key, 0) + 1  # re-insert so eviction drops the least recent key
            self.counts[key] = count
            if len(self.counts) > MAX_KEYS:
                del self.counts[next(iter(self.counts))]
            self.log.append(entry, body)
        return count

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()
            self.hangs.clear()
            self.streams.clear()
            self.responses.clear()
            self.outage = None


class SandboxHandler(serving.JSONHandler):
    server: SandboxServer

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        api = "anthropic" if url.path.startswith("/v1/messages") else "openai"
        raw = self._read_body(api)
        if raw is None:
            return
        call = {"path": url.path, "query": url.query, "raw": raw}
        routes = {
            "/v1/chat/completions": ("POST", lambda: self._model_call("chat", **call)),
            "/v1/messages": ("POST", lambda: self._model_call("messages", **call)),
            "/v1/messages/count_tokens": ("POST", lambda: self._model_call("count_tokens", **call)),
            "/v1/responses": ("POST", lambda: self._model_call("responses", **call)),
            "/v1/completions": ("POST", lambda: self._model_call("completions", **call)),
            "/v1/embeddings": ("POST", lambda: self._model_call("embeddings", **call)),
            "/v1/models": ("GET", lambda: admin.models(self)),
            "/_sandbox/calls": ("GET", lambda: admin.calls(self, url.query)),
            "/_sandbox/log": ("GET", lambda: admin.log(self, url.query)),
            "/_sandbox/hangs": ("GET", lambda: admin.snapshot(self, "hangs")),
            "/_sandbox/streams": ("GET", lambda: admin.snapshot(self, "streams")),
            "/_sandbox/reset": ("POST", lambda: admin.reset(self)),
            "/_sandbox/outage": ("POST", lambda: faults.set_outage(self, raw)),
        }
        route = routes.get(url.path)
        stored = RESPONSE_PATH_RE.fullmatch(url.path)
        if stored is not None:
            route = (method if method in ("GET", "DELETE") else "GET",
                     lambda: responses_api.stored_response(self, method, stored.group(1), url.query, raw))
        try:
            if route is None:
                self._error(api, 404, f"no such path: {url.path}")
            elif route[0] != method:
                self._error(api, 405, f"{method} not allowed on {url.path}")
            else:
                route[1]()
        except OSError:  # the client went away while we were answering
            self.close_connection = True
        except Exception as exc:  # a sandbox bug: answer 500 rather than drop the connection
            self._error(api, 500, f"sandbox internal error: {exc!r}")

    def _read_body(self, api: str) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # we cannot frame the next request; clients send lengths
            self._error(api, 411, "sandbox needs a Content-Length")
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._error(api, 413, "request body too large")
            return None
        return self.rfile.read(length) if length else b""

    # --- model endpoints ---

    def _model_call(self, kind: str, path: str, query: str, raw: bytes) -> None:
        api = "anthropic" if kind in ("messages", "count_tokens") else "openai"
        digest = hashlib.sha256(raw).hexdigest()
        key = self.headers.get("X-Request-Id") or digest
        try:
            body, problem = json.loads(raw), None
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
        except ValueError as exc:
            body, problem = {}, f"invalid JSON body: {exc}"
        stream = body.get("stream") is True and kind not in ("embeddings", "count_tokens")
        attempt = self.server.record_call(path, key, self.headers, stream=stream, query=query, body=raw)
        if self.server.latency_ms:
            time.sleep(self.server.latency_ms / 1000)
        if faults.in_outage(self, api):
            return None
        if not self._authorized(api):
            return self._error(api, 401, "invalid or missing sandbox api key", code="invalid_api_key")
        if api == "anthropic" and not self.headers.get("anthropic-version"):
            return self._error(api, 400, "anthropic-version header is required")
        if problem:
            return self._error(api, 400, problem)
        betas = anthropic_betas(self.headers.get_all("anthropic-beta"))
        try:
            if kind not in ("embeddings", "count_tokens") and body.get("stream") not in (None, True, False):
                raise ValueError("'stream' must be a boolean")
            if kind == "embeddings":
                payload, opts = embeddings_payload(body)
            elif kind == "count_tokens":
                payload, opts = count_tokens(body, betas)
            elif kind == "completions":
                answer, opts = completion_answer(body, digest)
            elif kind == "responses":
                turn = Turn(body, responses_api.continued(self.server, body.get("previous_response_id")))
                answer, opts = turn.answer, turn.opts
            else:
                answer, opts = chat_answer(api, body, digest, betas)
        except RequestError as exc:
            return self._error(api, exc.status, str(exc), code=exc.code, param=exc.param)
        except ValueError as exc:
            return self._error(api, 400, str(exc))
        if faults.inject_fault(self, api, opts, key, attempt):
            return None
        if kind in ("embeddings", "count_tokens"):
            return self._send_json(200, payload)
        if kind == "responses":
            return responses_api.respond(self, turn, body, opts, key, attempt)
        if stream:
            return self._stream(kind, answer, body, opts, key, attempt)
        build = {"chat": openai_chat_payload, "messages": anthropic_payload, "completions": completion_payload}
        return self._send_json(200, build[kind](answer))

    def _stream(self, kind: str, answer: Answer, body: dict, opts: dict, key: str, attempt: int) -> str:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if kind == "messages":
            events, error = anthropic_events(answer), anthropic_error_event()
        elif kind == "chat":
            events, error = chat_events(answer, include_usage), openai_error_event()
        else:
            events, error = completion_events(answer, include_usage), openai_error_event()
        return self._run_stream(events, error, opts, key, attempt)

    def _run_stream(self, events, error, opts: dict, key: str, attempt: int) -> str:
        """Send `events` as an SSE stream; return how it ended (completed, failed, client_closed)."""
        faults_apply = "times" not in opts or attempt <= opts["times"]
        record = {"key": key, "started": time.time(), "ended": None, "events_sent": 0, "reason": None}
        with self.server.lock:
            self.server.streams.append(record)
        StreamRun(self, events, error, opts, faults_apply, record, self.server.lock).run()
        return record["reason"]

    def _authorized(self, api: str) -> bool:
        expected = self.server.api_key
        if not expected:
            return True
        if api == "anthropic":
            given, want = self.headers.get("x-api-key", ""), expected
        else:
            given, want = self.headers.get("Authorization", ""), f"Bearer {expected}"
        return hmac.compare_digest(given.encode(), want.encode())

    # --- errors ---

    def _error(self, api: str, status: int, message: str, headers=None, code: str | None = None,
               param: str | None = None) -> None:
        self._send_json(status, error_payload(api, status, message, code, param), headers, REASONS.get(status))


# --- entry points -----------------------------------------------------------------------------

def make_server(host: str = "127.0.0.1", port: int = 0, latency_ms: int = 0,
                api_key: str | None = None) -> SandboxServer:
    return SandboxServer((host, port), latency_ms=latency_ms, api_key=api_key)


def serve_in_thread(host: str = "127.0.0.1", port: int = 0, latency_ms: int = 0,
                    api_key: str | None = None) -> tuple[SandboxServer, str]:
    """Start a server on a daemon thread; stop it with `server.stop()`."""
    return serving.serve_in_thread(make_server(host, port, latency_ms, api_key), "sandbox-provider")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.provider", description=LABEL)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=int, default=0, help="sleep before each model answer")
    parser.add_argument("--api-key", default=None, help="require this key from clients")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.latency_ms, args.api_key)
    return serving.serve_until_signalled(server, LABEL, "sandbox provider")


if __name__ == "__main__":
    raise SystemExit(main())
