"""The Falcon WSGI application: authenticate, route, enqueue, wait, answer."""

from __future__ import annotations

import falcon

from api import errors
from api.admission import Admission, WorkerLiveness
from api.after_response import AfterResponse
from api.answers import Answers
from api.duo import Duo
from api.duo import routes as duo_routes
from api.duo_auth import DuoAuthenticator
from api.gitlab import GitLabClient
from api.gitlab_cache import GitLabCache
from api.identity import Authenticator
from api.media import handlers
from api.middleware import IdentityMiddleware, RequestContext
from api.resources.admin import AdminQueues
from api.resources.count_tokens import CountTokens
from api.resources.health import Health, Ready
from api.resources.inference import endpoints
from api.resources.models import Models
from api.resources.responses import routes as responses_routes
from api.resources.root import Root
from api.routing import Router
from shared.config import GatewayConfig
from shared.connections import blocking_redis_client, redis_client
from shared.ratelimit import RateLimiter
from shared.responses_store import ResponsesStore
from shared.settings import Settings

# Threads per process that may hold a Redis connection at once (gunicorn gthread).
DEFAULT_POOL_SIZE = 128


class GatewayApp(AfterResponse):
    """The WSGI app and the work that runs beside it: ``start()`` it in the process that
    serves (the reply-stream janitor's thread), ``close()`` it when that process ends.
    Built and not started, it runs no thread."""

    def __init__(self, app: falcon.App, answers: Answers):
        super().__init__(app)
        self.answers = answers

    def start(self) -> None:
        self.answers.start()

    def close(self) -> None:
        self.answers.stop()


def create_app(settings: Settings, config: GatewayConfig, *, pool_size: int = DEFAULT_POOL_SIZE,
               authenticator: Authenticator | None = None,
               duo_authenticator: DuoAuthenticator | None = None) -> GatewayApp:
    """The app; ``authenticator`` (and ``duo_authenticator``, GitLab Duo's) replace GitLab verification
    in in-process unit tests."""
    redis = redis_client(settings.redis_url, max_connections=pool_size)
    longest_wait = max(config.max_timeout, config.gitlab.timeout + 2)
    blocking = blocking_redis_client(settings.redis_url, longest_wait=longest_wait, max_connections=pool_size)
    router = Router(config)
    liveness = WorkerLiveness(redis)
    admission = Admission(config, router, RateLimiter(redis), liveness)
    answers = Answers(config, redis, blocking)
    gitlab = GitLabClient(settings.gitlab_url or "http://gitlab.invalid", settings.gitlab_api_token, config.gitlab)
    cache = GitLabCache(redis, blocking, outage_grace=config.gitlab.outage_grace, fetch_timeout=config.gitlab.timeout,
                        local_ttl=config.gitlab.local_cache_ttl)
    authenticator = authenticator or Authenticator(gitlab, cache, redis, config.gitlab)

    app = falcon.App(
        middleware=[RequestContext(settings.max_body_bytes), IdentityMiddleware(authenticator)],
    )
    app.req_options.media_handlers = handlers(settings.max_body_bytes)
    app.resp_options.media_handlers = handlers(settings.max_body_bytes)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    models = Models(router)
    app.add_route("/", Root())
    app.add_route("/health", Health())
    app.add_route("/ready", Ready(redis, liveness, [model.name for model in config.models], gitlab,
                                  models=config.models, authenticator=authenticator))
    app.add_route("/admin/queues", AdminQueues(redis, [model.name for model in config.models]))
    app.add_route("/v1/models", models)
    app.add_route("/v1/models/{model_id}", models, suffix="one")
    inference = endpoints(admission, answers, keepalive_interval=settings.stream_keepalive_interval)
    for path, resource in inference.items():
        app.add_route(path, resource)
    app.add_route("/v1/messages/count_tokens",
                  CountTokens(admission, answers, keepalive_interval=settings.stream_keepalive_interval))
    store = ResponsesStore(redis, ttl=config.jobs.response_ttl, max_bytes=config.jobs.max_stored_response_bytes)
    for path, resource in responses_routes(admission, answers, store,
                                           keepalive_interval=settings.stream_keepalive_interval).items():
        app.add_route(path, resource)
    duo_auth = duo_authenticator or DuoAuthenticator.for_gitlab(gitlab, authenticator, config.duo)
    for path, resource in duo_routes(Duo(config, duo_auth, admission, answers)).items():
        app.add_route(path, resource)
    return GatewayApp(app, answers)
