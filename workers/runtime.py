"""What a worker process knows: its settings, the config, and one adapter and
pooled HTTP client per model, built once and reused by every job it runs."""

from __future__ import annotations

import json
import threading

from shared.config import GatewayConfig, load_config
from shared.errors import InvalidRequest, ModelNotFound
from shared.jobs import CHAT_COMPLETIONS, JobRequest
from shared.ratelimit import RateLimiter
from shared.settings import Settings
from workers.providers import Provider, provider_for
from workers.upstream import UpstreamClient


class Runtime:
    def __init__(self, settings: Settings, config: GatewayConfig, *, pool_size: int = 4):
        self.settings = settings
        self.config = config
        self.pool_size = pool_size
        self._limiter: RateLimiter | None = None
        self._models: dict[str, tuple[Provider, UpstreamClient]] = {}
        self._lock = threading.Lock()

    def for_model(self, name: str) -> tuple[Provider, UpstreamClient]:
        with self._lock:
            if name not in self._models:
                model = self.config.model(name)
                if model is None:
                    # The API and this worker disagree about the config: a deployment problem.
                    raise ModelNotFound(f"Model '{name}' is not configured on the worker that took the job.")
                self._models[name] = (provider_for(model), UpstreamClient(model, pool_size=self.pool_size))
            return self._models[name]

    def limiter(self, connection) -> RateLimiter:
        if self._limiter is None:
            self._limiter = RateLimiter(connection)
        return self._limiter

    def serve(self, request: JobRequest) -> tuple[int, bytes, dict]:
        """Call the provider for one job; return (status, response JSON, facts for the log)."""
        if request.endpoint != CHAT_COMPLETIONS:
            raise InvalidRequest(f"Endpoint '{request.endpoint}' is not served by this worker.")
        provider, client = self.for_model(request.model)
        upstream_request = provider.chat_request(request.body, request_id=request.request_id)
        result = client.post_json(upstream_request, deadline=request.deadline)
        answer = provider.chat_response(result.data, requested_model=request.requested_model)
        meta = {
            "attempts": result.attempts,
            "upstream_seconds": round(result.seconds, 4),
            "retry_reasons": result.retry_reasons,
            "usage": answer.get("usage"),
        }
        return 200, json.dumps(answer).encode(), meta


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def set_runtime(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """The process's runtime; built from the environment if the worker entry point did not."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = Settings.from_env()
            _runtime = Runtime(settings, load_config(settings.config_file_path))
        return _runtime
