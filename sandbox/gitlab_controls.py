"""Test controls of the GitLab stand-in: the `/_gitlab/...` endpoints and the run-time state they steer.

That state is the call log (hashed tokens only), the injected fault, user-state overrides (blocking a user)
and revoked tokens (kept as hashes).
``sandbox.gitlab`` builds its server on ``ControlledServer`` and its handler on ``ControlEndpoints``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import deque

from sandbox import serving
from sandbox.gitlab_data import USERS

CALL_LOG_SIZE = 1000
STATE_RE = re.compile(r"/_gitlab/users/(?P<uid>[^/]+)/state")


def token_digest(token: str | None) -> str | None:
    """What the call log keeps of a token: enough to tell tokens apart, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


def parse_fault(body) -> dict:
    """Validate a POST /_gitlab/fault body; raise ValueError on anything unexpected."""
    if not isinstance(body, dict):
        raise ValueError("fault must be a JSON object")
    unknown = set(body) - {"status", "times", "retry_after", "delay_ms", "close", "paths"}
    if unknown:
        raise ValueError(f"unknown fault keys: {sorted(unknown)}")

    def number(key, low, high=float("inf"), kinds=(int,)):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high):
            raise ValueError(f"'{key}' must be a number from {low} to {high}")
        return value

    fault = {"status": number("status", 400, 599), "times": number("times", 1), "delay_ms": number("delay_ms", 0),
             "retry_after": number("retry_after", 0, kinds=(int, float)), "close": body.get("close", False),
             "paths": body.get("paths")}
    if not isinstance(fault["close"], bool):
        raise ValueError("'close' must be a boolean")
    paths = fault["paths"]
    if paths is not None and not (isinstance(paths, list) and all(isinstance(p, str) and p for p in paths)):
        raise ValueError("'paths' must be a list of path prefixes")
    if fault["status"] is None and not fault["close"] and not fault["delay_ms"]:
        raise ValueError("a fault needs 'status', 'close' or 'delay_ms'")
    return fault


class ControlledServer(serving.StandinServer):
    """A stand-in server holding the state the controls steer; `handler` answers its requests."""

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.lock = threading.Lock()
        self.calls: deque = deque(maxlen=CALL_LOG_SIZE)
        self.fault: dict | None = None
        self.states: dict[int, str] = {}  # run-time user state changes
        self.revoked: set[str] = set()  # token_digest of each token revoked at run time

    def user_state(self, user_id: int) -> str:
        with self.lock:
            return self.states.get(user_id, USERS[user_id][4])

    def is_revoked(self, token: str | None) -> bool:
        with self.lock:
            return token_digest(token) in self.revoked

    def take_fault(self, path: str) -> dict | None:
        """The fault that applies to this API call, if any (consuming one of its `times`)."""
        with self.lock:
            fault = self.fault
            if fault is None or not any(path.startswith(p) for p in fault["paths"] or ["/api/v4"]):
                return None
            if fault["times"] is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self.fault = None
            return dict(fault)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.fault = None
            self.states.clear()
            self.revoked.clear()


class ControlEndpoints:
    """Handler mixin answering `/_gitlab/...`; the handler class provides `_send_json` and `_message`."""
    server: ControlledServer

    def _control(self, method: str, path: str, raw: bytes) -> None:
        server, state_path = self.server, STATE_RE.fullmatch(path)
        if path == "/_gitlab/calls" and method == "GET":
            with server.lock:
                calls = [dict(call) for call in server.calls]
            return self._send_json(200, {"calls": calls})
        if path == "/_gitlab/reset" and method == "POST":
            server.reset()
            return self._send_json(200, {"ok": True})
        if path == "/_gitlab/fault" and method in ("GET", "POST", "DELETE"):
            fault = None
            if method == "POST":
                try:
                    fault = parse_fault(json.loads(raw or b"null"))
                except ValueError as exc:  # JSONDecodeError is a ValueError too
                    return self._message(400, f"400 Bad request - {exc}")
            with server.lock:
                if method != "GET":
                    server.fault = fault
                current = dict(server.fault) if server.fault else None
            return self._send_json(200, {"fault": current})
        if path == "/_gitlab/tokens/revoke" and method == "POST":
            try:
                token = json.loads(raw or b"null")["token"]
            except (ValueError, TypeError, KeyError):
                token = None
            if not isinstance(token, str) or not token:
                return self._message(400, "400 Bad request - send {\"token\": \"<the token to revoke>\"}")
            with server.lock:
                server.revoked.add(token_digest(token))
            return self._send_json(200, {"revoked": token_digest(token)})
        if state_path and method == "POST":
            uid = state_path["uid"]
            if not uid.isdigit() or int(uid) not in USERS:
                return self._message(404, "404 User Not Found")
            try:
                state = json.loads(raw or b"null")["state"]
            except (ValueError, TypeError, KeyError):
                state = None
            if state not in ("active", "blocked"):
                return self._message(400, "400 Bad request - state must be 'active' or 'blocked'")
            with server.lock:
                server.states[int(uid)] = state
            return self._send_json(200, {"id": int(uid), "state": state})
        return self._message(404, "404 Not Found")
