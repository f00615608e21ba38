"""What a worker process knows: its settings, the config, and one adapter and
pooled HTTP client per model, built once and reused by every job it runs."""

from __future__ import annotations

import threading

from rq import get_current_job

from shared.config import GatewayConfig, load_config
from shared.errors import InvalidRequest, ModelNotFound
from shared.jobs import ENDPOINTS, RESPONSES, RESPONSES_DELETE, RESPONSES_RETRIEVE, JobRequest
from shared.ratelimit import RateLimiter
from shared.responses_store import ResponsesStore
from shared.settings import Settings
from workers import endpoints, endpoints_responses
from workers.endpoints import Emit, Outcome
from workers.providers import Provider, provider_for
from workers.upstream import UpstreamClient


class Runtime:
    def __init__(self, settings: Settings, config: GatewayConfig, *, pool_size: int = 4):
        self.settings = settings
        self.config = config
        self.pool_size = pool_size
        self._limiter: RateLimiter | None = None
        self._responses: ResponsesStore | None = None
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

    def responses_store(self, connection) -> ResponsesStore:
        if self._responses is None:
            jobs = self.config.jobs
            self._responses = ResponsesStore(connection, ttl=jobs.response_ttl,
                                             max_bytes=jobs.max_stored_response_bytes)
        return self._responses

    def serve(self, request: JobRequest, emit: Emit | None = None) -> Outcome:
        """Call the provider for one job. A stream hands each framed chunk to ``emit``."""
        if request.endpoint not in ENDPOINTS:
            raise InvalidRequest(f"Endpoint '{request.endpoint}' is not served by this worker.")
        provider, client = self.for_model(request.model)
        if request.endpoint == RESPONSES:
            store = self.responses_store(get_current_job().connection)
            return endpoints_responses.serve(provider, client, request, emit, store)
        if request.endpoint in (RESPONSES_RETRIEVE, RESPONSES_DELETE):
            store = self.responses_store(get_current_job().connection)
            return endpoints_responses.serve_stored(provider, client, request, store)
        if request.stream:
            return endpoints.serve_stream(provider, client, request, emit)
        return endpoints.serve(provider, client, request)


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
