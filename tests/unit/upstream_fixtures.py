"""A scripted local HTTP server standing in for a provider, and a model configured to call it
(the fixtures that start one and call it are test_upstream_client.py's)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.config import ModelConfig, parse_config

SECRET = "sk-secret-value"
OK_BODY = {"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}


class ScriptedServer:
    """Answers each request with the next scripted (status, headers, body); the last one repeats."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server names it so
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner.lock:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                           "client_port": self.client_address[1]})
                    status, headers, payload = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args) -> None:  # http.server calls it so
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def answer(self, *script: tuple[int, dict[str, str], bytes | dict | str]) -> None:
        for status, headers, body in script:
            if isinstance(body, dict):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **headers}
            elif isinstance(body, str):
                body = body.encode()
            self.script.append((status, headers, body))


def model_for(url: str, attempts: int = 3) -> ModelConfig:
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": url + "/v1",
                                       "api_key": SECRET, "retries": {"attempts": attempts}}]}, {})
    return config.models[0]
