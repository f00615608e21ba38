"""What a worker process knows: its settings, the config, and per model its
deployments (``workers.deployments``: an adapter and a pooled HTTP client each),
built once and reused by every job it runs."""

from __future__ import annotations

import threading

from rq import get_current_job

from shared.config import GatewayConfig, load_config
from shared.errors import InvalidRequest, ModelNotFound
from shared.jobs import ENDPOINTS, RESPONSES, RESPONSES_DELETE, RESPONSES_RETRIEVE, JobRequest
from shared.ratelimit import RateLimiter
from shared.replies import SERVED_BY
from shared.responses_store import RELAYED, ResponsesStore, owner_of
from shared.settings import Settings
from workers import endpoints, endpoints_responses
from workers.deployments import Deployment, Deployments
from workers.endpoints import Emit, Outcome


class Runtime:
    def __init__(self, settings: Settings, config: GatewayConfig, *, pool_size: int = 4):
        self.settings = settings
        self.config = config
        self.pool_size = pool_size
        self._limiter: RateLimiter | None = None
        self._responses: ResponsesStore | None = None
        self._models: dict[str, Deployments] = {}
        self._lock = threading.Lock()

    def for_model(self, name: str) -> Deployments:
        with self._lock:
            if name not in self._models:
                model = self.config.model(name)
                if model is None:
                    # The API and this worker disagree about the config: a deployment problem.
                    raise ModelNotFound(f"Model '{name}' is not configured on the worker that took the job.")
                self._models[name] = Deployments(model, pool_size=self.pool_size)
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
        deployments = self.for_model(request.model)
        simple = deployments.simple
        if simple is not None:  # one upstream, no breaker: as before, its client retries by itself
            outcome = self._run(simple, request, _saying_who(emit, simple.served_by) if emit is not None else None)
            outcome.served_by = simple.served_by
            return outcome
        connection = get_current_job().connection
        return deployments.serve(request, lambda member, out: self._run(member, request, out), emit, connection,
                                 self.limiter(connection), pin=self._pin(deployments, request, connection))

    def _run(self, member: Deployment, request: JobRequest, emit: Emit | None) -> Outcome:
        """The endpoint's call on one deployment."""
        provider, client = member.provider, member.client
        if request.endpoint == RESPONSES:
            store = self.responses_store(get_current_job().connection)
            return endpoints_responses.serve(provider, client, request, emit, store)
        if request.endpoint in (RESPONSES_RETRIEVE, RESPONSES_DELETE):
            store = self.responses_store(get_current_job().connection)
            return endpoints_responses.serve_stored(provider, client, request, store)
        if request.stream:
            return endpoints.serve_stream(provider, client, request, emit)
        return endpoints.serve(provider, client, request)

    def _pin(self, deployments: Deployments, request: JobRequest, connection) -> str | None:
        """The deployment whose provider keeps the response a request continues, reads or deletes: only it
        can serve the request (``shared.responses_store``)."""
        if len(deployments.members) < 2:
            return None
        if request.endpoint == RESPONSES:
            response_id = request.body.get("previous_response_id")
        elif request.endpoint in (RESPONSES_RETRIEVE, RESPONSES_DELETE):
            response_id = request.body.get("response_id")
        else:
            return None
        if not isinstance(response_id, str):
            return None
        record = self.responses_store(connection).record(response_id, owner_of(request.caller))
        if record is None or record.kind != RELAYED or not record.deployment or record.model != request.model:
            return None
        return record.deployment


def _saying_who(emit: Emit, served_by: str) -> Emit:
    """``emit`` whose first chunk also says who served the stream (the API's x-aigw-served-by)."""
    first = True

    def out(data: bytes, meta: dict | None = None) -> None:
        nonlocal first
        if first:
            first = False
            emit(data, {**(meta or {}), SERVED_BY: served_by})
        else:
            emit(data)
    return out


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
