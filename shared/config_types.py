"""The config file's data model: the dataclasses ``shared.config`` builds, its constants and ``ConfigError``.

Import these from ``shared.config``, which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

DEFAULT_CONFIG_PATH = "/etc/ai-gateway/config.yaml"
MODEL_TYPES = ("openai", "anthropic", "vertex", "generic")
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}
API_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MATCH_KEYS = ("gitlab_project_id", "gitlab_group_id", "gitlab_user_id", "model_name")
ACCESS_LEVELS = (10, 20, 30, 40, 50)
# A model's reasoning control (``models[].reasoning``): what a translated request's thinking or effort
# becomes. effort: OpenAI's reasoning_effort; budget: a thinking token budget (Anthropic
# thinking.budget_tokens, Gemini thinkingConfig.thinkingBudget); adaptive: Anthropic's adaptive thinking
# with output_config.effort; none: the model has none, so a request for reasoning is refused unless the
# model's drop_params lists it. The first of each type's choices is its default.
REASONING_CONTROLS = {"openai": ("none", "effort"), "generic": ("none", "effort"),
                      "anthropic": ("budget", "adaptive", "none"), "vertex": ("budget", "none")}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True,
               "false": False, "0": False, "no": False, "off": False}


class ConfigError(Exception):
    """Invalid settings or config file; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def parse_bool(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off in any case; ``ValueError`` otherwise."""
    try:
        return _BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError("must be true or false (or 1/0, yes/no, on/off)") from None


@dataclass(frozen=True)
class RateLimit:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    requests_per_day: int | None = None
    per: str | None = None  # "user" | "project"; routes only

    def is_empty(self) -> bool:
        return (self.requests_per_minute, self.tokens_per_minute, self.requests_per_day) == (None,) * 3


# The name of the one deployment a model in the short form (its upstream keys on the model itself) has.
DEFAULT_DEPLOYMENT = "default"


@dataclass(frozen=True)
class DeploymentConfig:
    """One way to reach a model (``models[].deployments[]``): its own provider type, address, key and
    upstream model id. ``weight`` is its share of the calls among the healthy ones; ``rate_limit`` the
    provider's own quota for its key, checked by the worker when it picks the deployment."""

    name: str
    type: str
    base_url: str
    api_key: str | None = field(repr=False)
    model: str
    weight: int = 1
    rate_limit: RateLimit = RateLimit()
    verify_tls: bool = True
    ca_file: str | None = None
    project: str | None = None  # vertex
    location: str | None = None  # vertex
    credentials_file: str | None = None  # vertex
    native_responses_api: bool = False  # openai, generic
    reasoning: str | None = None  # REASONING_CONTROLS of its type; None: the type's default


@dataclass(frozen=True)
class BreakerConfig:
    """``models[].breaker``: when a deployment is taken out of the rotation (``workers.breaker``)."""

    failures: int = 5  # retryable failures within ``window`` that start a cool-down
    window: float = 60.0
    cool_down: float = 30.0  # then one probe call decides
    max_cool_down: float = 300.0  # the longest a provider's Retry-After cools a deployment
    forbidden: int = 3  # consecutive 403 answers that mark it failed (one 401 does)
    # distinct callers whose failures (those a prompt may cause) must be in a window to count toward opening
    min_callers: int = 2


@dataclass(frozen=True)
class ModelConfig:
    name: str
    type: str
    base_url: str
    api_key: str | None = field(repr=False)
    model: str
    timeout: float = 30.0
    rate_limit: RateLimit = RateLimit()
    retry_attempts: int = 3  # total attempts, including the first
    workers: int = 1
    concurrency: int = 16  # jobs at once in one worker process
    max_queue_depth: int = 1000
    verify_tls: bool = True
    ca_file: str | None = None
    max_output_tokens: int = 1024  # max_tokens when a request gives none: sent where required, and reserved
    stream_idle_timeout: float = 60.0  # longest silence between two chunks of a stream
    max_stream_duration: float = 600.0  # longest stream, first chunk to last
    project: str | None = None  # vertex: the Google Cloud project
    location: str | None = None  # vertex: the region, e.g. us-central1
    credentials_file: str | None = None  # vertex: a service-account JSON; else application default credentials
    # openai, generic: POST /v1/responses goes to the server's own /v1/responses untouched (openai: the default);
    # otherwise it is translated through chat completions.
    native_responses_api: bool = False
    # What translation drops instead of refusing: field names, dotted paths, tools.<type> (the model's own
    # list, else defaults.drop_params). Passthrough drops nothing.
    drop_params: tuple[str, ...] = ()
    reasoning: str | None = None  # the reasoning control (REASONING_CONTROLS); None: the type's default
    # Several upstreams (``models[].deployments``); empty: the short form, the fields above are the one
    # upstream. In the long form the fields above are the first deployment's (what the API reads of a
    # model's type: its /v1/models object, count_tokens), and ``upstreams`` lists them all.
    deployments: tuple[DeploymentConfig, ...] = ()
    breaker: BreakerConfig = BreakerConfig()
    # Other configured models to use, in order, when every deployment is unavailable or keeps failing
    # before anything reached the client (the API re-routes; issue 18).
    fallbacks: tuple[str, ...] = ()
    # The larger model a provider's "context length exceeded" moves a request to.
    context_window_fallback: str | None = None

    @cached_property
    def upstreams(self) -> tuple[DeploymentConfig, ...]:
        """The configured deployments, or the short form's one, named ``DEFAULT_DEPLOYMENT``."""
        if self.deployments:
            return self.deployments
        return (DeploymentConfig(
            name=DEFAULT_DEPLOYMENT, type=self.type, base_url=self.base_url, api_key=self.api_key,
            model=self.model, verify_tls=self.verify_tls, ca_file=self.ca_file, project=self.project,
            location=self.location, credentials_file=self.credentials_file,
            native_responses_api=self.native_responses_api, reasoning=self.reasoning),)

    @property
    def uses_breaker(self) -> bool:
        """Whether deployment health is kept for this model: several deployments, or a fallback to go
        to when the one is out. A short-form model without fallbacks costs nothing more than before."""
        return bool(self.deployments or self.fallbacks)

    def for_deployment(self, deployment: DeploymentConfig) -> ModelConfig:
        """This model as one deployment serves it: what a provider adapter and HTTP client are built from
        (the name stays the model's, for messages and metrics)."""
        if not self.deployments:
            return self
        return replace(self, type=deployment.type, base_url=deployment.base_url, api_key=deployment.api_key,
                       model=deployment.model, verify_tls=deployment.verify_tls, ca_file=deployment.ca_file,
                       project=deployment.project, location=deployment.location,
                       credentials_file=deployment.credentials_file,
                       native_responses_api=deployment.native_responses_api, reasoning=deployment.reasoning,
                       deployments=())

    @property
    def reasoning_control(self) -> str:
        """``reasoning`` as configured, or the model type's default."""
        return self.reasoning or REASONING_CONTROLS.get(self.type, ("none",))[0]


@dataclass(frozen=True)
class RouteMatch:
    gitlab_project_id: tuple[str, ...] | None = None
    gitlab_group_id: tuple[str, ...] | None = None
    gitlab_user_id: tuple[str, ...] | None = None
    model_name: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Route:
    name: str
    match: RouteMatch
    destination: str | None  # None: the requested model name
    rate_limit: RateLimit


@dataclass(frozen=True)
class GitLabConfig:
    timeout: float = 10.0
    verify_tls: bool = True
    ca_file: str | None = None
    min_access_level: int = 30
    cache_ttl: float = 60.0
    local_cache_ttl: float = 1.0
    outage_grace: float = 900.0
    max_calls_per_second: int = 20  # GitLab lookups per API process; a lookup over it waits at most 1 s, then 503


@dataclass(frozen=True)
class JobsConfig:
    result_ttl: float = 60.0
    failure_ttl: float = 86400.0
    max_unread_reply_bytes: int = 1024 * 1024  # of a stream's reply left unread in Redis; the worker waits past it
    response_ttl: float = 3600.0  # a stored Responses API response (or a relayed one's owner) is kept this long
    max_stored_response_bytes: int = 1024 * 1024  # a stored response larger than this is not kept


@dataclass(frozen=True)
class LoggingConfig:
    log_payloads: bool = False


@dataclass(frozen=True)
class DefaultsConfig:
    drop_params: tuple[str, ...] = ()  # for every model whose own drop_params is not set


@dataclass(frozen=True)
class DuoConfig:
    """The ``duo:`` section: GitLab Duo Self-Hosted calling this gateway as its AI gateway
    (parsed by ``shared.config_duo``)."""

    # Who may call (api.duo_auth): the GitLab instance ids (a JWT's ``sub``) accepted; empty: any
    # instance whose token verifies against the keys GITLAB_URL publishes.
    instance_ids: tuple[str, ...] = ()
    # Least time between two fetches of the instance's signing keys by one API process.
    keys_refetch_interval: float = 60.0
    # What serves each Duo feature (code_completions, code_generations, duo_chat): a configured model's
    # name. A feature not here is served by the model GitLab names, if it names a configured one.
    features: dict[str, str] = field(default_factory=dict)
    # Per configured model: its prompt templates and FIM family (shared.duo_prompts), where not the defaults.
    prompts: dict[str, DuoModelPrompts] = field(default_factory=dict)

    def prompts_for(self, model: str) -> DuoModelPrompts:
        return self.prompts.get(model) or DuoModelPrompts()


@dataclass(frozen=True)
class DuoModelPrompts:
    """``duo.prompts.<model>``: how a Duo request becomes this model's prompt (``shared.duo_prompts``)."""

    family: str | None = None  # the FIM family; None: the family GitLab names for the self-hosted model
    fim_suffix: bool = False  # the server takes /v1/completions' suffix: the prompt is the prefix alone
    templates: dict[str, str] = field(default_factory=dict)  # shared.duo_prompts.TEMPLATES names


@dataclass(frozen=True)
class GatewayConfig:
    models: tuple[ModelConfig, ...]
    routes: tuple[Route, ...] = ()
    routes_configured: bool = False  # the file has a `routes` key, even an empty list
    gitlab: GitLabConfig = GitLabConfig()
    jobs: JobsConfig = JobsConfig()
    logging: LoggingConfig = LoggingConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    duo: DuoConfig = DuoConfig()
    warnings: tuple[str, ...] = ()

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def max_timeout(self) -> float:
        return max((m.timeout for m in self.models), default=ModelConfig.timeout)

    @property
    def max_stream_duration(self) -> float:
        """The longest any request may hold an API thread: a stream's first chunk, then its length."""
        return max((m.timeout + m.max_stream_duration for m in self.models), default=ModelConfig.timeout)
