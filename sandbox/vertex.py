"""Deterministic stand-in for Google Vertex AI: OAuth2 token endpoint, Gemini and text embeddings.

It speaks Vertex's paths and JSON so the real adapter (and google-auth) can be tested end to end.
At start it generates an RSA key for one service account; ``--write-credentials`` writes that
account's JSON key file, whose ``token_uri`` points here. Model calls need a bearer token this
server issued and that has not expired. It is NOT a model: answers are "Sandbox reply: " + the last
user text, steered by the same ``[[sandbox ...]]`` directives as ``sandbox.provider``, plus
``tool=<name>``, which answers with a functionCall.

Run: python -m sandbox.vertex [--host 127.0.0.1] [--port 0] [--write-credentials PATH] [--token-ttl S]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import threading
import time
from collections import deque
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox import serving
from sandbox.provider import DIRECTIVE_RE, make_reply, parse_directive, read_prompt

LABEL = "VERTEX STAND-IN: canned answers, not Google"
PROJECT_ID = "standin-project"
CLIENT_EMAIL = f"gateway@{PROJECT_ID}.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always sets `aud` to Google's token endpoint, whatever the key file's token_uri says.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MODEL_PATH = re.compile(r"/v1/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+)"
                        r":(generateContent|streamGenerateContent|predict)")
LOG_SIZE = 500
MAX_KEYS = 100_000
MAX_BODY = 32 * 1024 * 1024
HANG_TIMEOUT = 300.0
CLOCK_SKEW = 60  # seconds of iat in the future Google tolerates
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# Vertex rejects unknown JSON fields with 400; so does the stand-in, to catch translation slips.
_REQUEST_KEYS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                 "labels", "cachedContent"}
_GENERATION_KEYS = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
                    "presencePenalty", "frequencyPenalty", "seed", "responseMimeType", "responseSchema",
                    "responseLogprobs", "logprobs", "thinkingConfig"}
_PART_KEYS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"}


# --- pure helpers -------------------------------------------------------------------------------

def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_assertion(assertion: str, public_key, *, issuer: str, audiences: tuple[str, ...],
                     key_id: str | None = None, now: float | None = None) -> dict:
    """Check an RS256 JWT-bearer assertion as Google's token endpoint does; return its claims."""
    now = time.time() if now is None else now
    try:
        head_b64, claims_b64, sig_b64 = assertion.split(".")
        header = json.loads(_b64url_decode(head_b64))
        claims = json.loads(_b64url_decode(claims_b64))
        signature = _b64url_decode(sig_b64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed JWT ({exc.__class__.__name__})") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        raise ValueError("the JWT must be an RS256-signed object")
    if key_id is not None and header.get("kid") not in (None, key_id):
        raise ValueError("unknown signing key id")
    try:
        public_key.verify(signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ValueError("Invalid JWT Signature.") from None
    if claims.get("iss") != issuer:
        raise ValueError("Invalid JWT: unknown issuer")
    if claims.get("aud") not in audiences:
        raise ValueError("Invalid JWT: the audience must be the token URI")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not (isinstance(exp, int | float) and isinstance(iat, int | float)) or not (
            iat - CLOCK_SKEW <= now < exp and exp - iat <= 3600):
        raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe")
    return claims


def take_tool(text: str) -> tuple[str, str | None]:
    """Remove ``tool=<name>`` items from directives (sandbox.provider does not know them)."""
    found: list[str] = []

    def strip(match: re.Match) -> str:
        items = []
        for item in match.group(1).split():
            key, _, value = item.partition("=")
            if key == "tool" and value:
                found.append(value)
            else:
                items.append(item)
        return f"[[sandbox {' '.join(items)}]]" if items else " "

    return DIRECTIVE_RE.sub(strip, text), (found[-1] if found else None)


def _texts(content: dict) -> str:
    return " ".join(p["text"] for p in content.get("parts") or []
                    if isinstance(p.get("text"), str) and not p.get("thought"))


def read_gemini(body: dict) -> dict:
    """Validate a generateContent body; return what the answer depends on. ValueError on bad input."""
    unknown = [key for key in body if key not in _REQUEST_KEYS]
    gen = body.get("generationConfig") or {}
    if not isinstance(gen, dict):
        raise ValueError("generationConfig must be an object")
    unknown += [f"generation_config.{key}" for key in gen if key not in _GENERATION_KEYS]
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("contents must be a non-empty list")
    for c in contents:
        if not isinstance(c, dict) or c.get("role") not in ("user", "model"):
            raise ValueError("every content needs role 'user' or 'model'")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            raise ValueError("contents.parts must be a non-empty list of objects")
        unknown += [f"parts.{key}" for p in parts for key in p if key not in _PART_KEYS]
        if any(p.get("text") == "" for p in parts):
            raise ValueError("Unable to submit request because it has an empty text parameter.")
    if unknown:
        raise ValueError(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
    messages = [{"role": "user" if c["role"] == "user" else "assistant", "content": take_tool(_texts(c))[0]}
                for c in contents]
    last_user = next((c for c in reversed(contents) if c["role"] == "user"), {"parts": []})
    tool = take_tool(_texts(last_user))[1]
    # A tool result in the last user turn is what the reply is about (a tool round trip).
    results = [p["functionResponse"] for p in last_user["parts"] if isinstance(p.get("functionResponse"), dict)]
    system = _texts(body.get("systemInstruction") or {})
    text, opts, prompt_tokens = read_prompt(messages, take_tool(system)[0])
    limit = gen.get("maxOutputTokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError("maxOutputTokens must be a positive integer")
    stops = gen.get("stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ValueError("stopSequences must be a list of strings")
    tool_said = str((results[-1].get("response") or {}).get("content")) if results else None
    return {"text": text, "opts": opts, "prompt_tokens": prompt_tokens, "limit": limit, "stops": stops,
            "tool": tool, "tool_said": tool_said}


def vector(text: str, dims: int) -> list[float]:
    """Deterministic floats in [-1, 1) from the text."""
    return [round(int.from_bytes(hashlib.sha256(f"{i}:{text}".encode()).digest()[:4], "big") / 2**31 - 1, 6)
            for i in range(dims)]


# --- HTTP server --------------------------------------------------------------------------------

class VertexServer(serving.StandinServer):

    def __init__(self, address, *, token_ttl: float = 3600, credentials_path: str | None = None):
        super().__init__(address, VertexHandler)
        self.token_ttl = token_ttl
        self.hang_timeout = HANG_TIMEOUT
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(20)
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued = 0
        self.attempts: dict[str, int] = {}
        self.calls: deque = deque(maxlen=LOG_SIZE)
        if credentials_path:
            self.write_credentials(credentials_path)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def credentials_info(self) -> dict:
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": PROJECT_ID, "private_key_id": self.key_id,
                "private_key": pem, "client_email": CLIENT_EMAIL, "client_id": "1" + "0" * 20,
                "auth_uri": f"{self.base_url}/auth", "token_uri": self.token_uri, "universe_domain": "googleapis.com"}

    def write_credentials(self, path: str) -> None:
        # A private key: readable by the owner only, like a downloaded key file should be.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.credentials_info(), fh, indent=2)

    def issue_token(self) -> str:
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        now = time.monotonic()
        with self.lock:
            for old in [t for t, expiry in self.tokens.items() if expiry <= now]:
                del self.tokens[old]
            self.tokens[token] = now + self.token_ttl
            self.issued += 1
        return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return self.tokens.get(token, 0.0) > time.monotonic()

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
                self._token(raw)
            elif url.path == "/_vertex/calls":
                with self.server.lock:
                    self._send_json(200, {"calls": [dict(c) for c in self.server.calls]})
            elif url.path == "/_vertex/tokens":
                self._send_json(200, {"issued": self.server.issued})
            else:
                self._model_call(url.path, url.query, match.groups(), raw)
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a stand-in bug: answer 500 rather than drop the connection
            self._error(500, f"stand-in internal error: {exc!r}")

    def _token(self, raw: bytes) -> None:
        form = parse_qs(raw.decode("utf-8", "replace"))
        if form.get("grant_type", [""])[0] != JWT_GRANT:
            return self._send_json(400, {"error": "unsupported_grant_type",
                                         "error_description": f"use {JWT_GRANT}"})
        try:
            claims = verify_assertion(form.get("assertion", [""])[0], self.server.private_key.public_key(),
                                      issuer=CLIENT_EMAIL, key_id=self.server.key_id,
                                      audiences=(self.server.token_uri, GOOGLE_TOKEN_URI))
        except ValueError as exc:
            return self._send_json(400, {"error": "invalid_grant", "error_description": str(exc)})
        if SCOPE not in str(claims.get("scope", "")).split():
            return self._send_json(400, {"error": "invalid_scope", "error_description": f"ask for {SCOPE}"})
        token = self.server.issue_token()
        expires_in = max(1, math.ceil(self.server.token_ttl))
        self._send_json(200, {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})

    def _model_call(self, path: str, query: str, groups: tuple, raw: bytes) -> None:
        project, location, model, method = groups
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        authorized = scheme.lower() == "bearer" and self.server.token_valid(token.strip())
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
            prompt = read_gemini(body)
        except ValueError as exc:
            return self._error(400, str(exc))
        if self._inject_fault(prompt["opts"], attempt):
            return None
        response_id = hashlib.sha256(raw).hexdigest()[:24]
        if prompt["tool"] and prompt["tool_said"] is None:
            parts = [{"functionCall": {"name": prompt["tool"], "args": {"query": prompt["text"]}}}]
            pieces, finish, completion = [parts], "STOP", 1 + len(prompt["text"].split())
        else:
            said = f"tool said {prompt['tool_said']}" if prompt["tool_said"] is not None else prompt["text"]
            reply, end, _ = make_reply(said, prompt["limit"], prompt["stops"])
            finish, completion = ("MAX_TOKENS" if end == "length" else "STOP"), len(reply.split())
            parts = [{"text": reply}]
            pieces = [[{"text": piece}] for piece in re.findall(r"\S+\s*", reply)] or [parts]
        usage = {"promptTokenCount": prompt["prompt_tokens"], "candidatesTokenCount": completion,
                 "totalTokenCount": prompt["prompt_tokens"] + completion}

        def response(parts: list, last: bool) -> dict:
            candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
            out = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
            if last:
                candidate["finishReason"] = finish
                out["usageMetadata"] = usage
            return out

        if method == "generateContent":
            return self._send_json(200, response(parts, True))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, parts in enumerate(pieces):  # one SSE event per word, each in its own HTTP chunk
            event = f"data: {json.dumps(response(parts, i == len(pieces) - 1))}\r\n\r\n".encode()
            self.wfile.write(f"{len(event):X}\r\n".encode() + event + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _predict(self, body: dict, attempt: int) -> None:
        instances = body.get("instances")
        params = body.get("parameters") or {}
        dims = params.get("outputDimensionality", 8) if isinstance(params, dict) else None
        if not isinstance(instances, list) or not instances or not all(
                isinstance(i, dict) and isinstance(i.get("content"), str) for i in instances):
            return self._error(400, "instances must be a non-empty list of {content: string}")
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 3072:
            return self._error(400, "parameters.outputDimensionality must be an integer in 1..3072")
        predictions, opts = [], {}
        try:
            for instance in instances:
                text, found = parse_directive(instance["content"])
                opts.update(found)
                predictions.append({"embeddings": {"values": vector(text, dims),
                                                   "statistics": {"token_count": len(text.split()),
                                                                  "truncated": False}}})
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
