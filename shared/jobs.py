"""The job the API puts on a model's queue: what the worker needs, nothing more.

The payload travels through Redis as JSON (RQ's JSON serializer). It never holds
the caller's token or a provider key: workers read keys from their own config.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

SCHEMA_VERSION = 1

# The client's endpoint (and so its wire format); the worker answers in it.
CHAT_COMPLETIONS = "chat.completions"  # OpenAI
MESSAGES = "messages"  # Anthropic
EMBEDDINGS = "embeddings"  # OpenAI
COMPLETIONS = "completions"  # OpenAI's legacy completions (fill-in-the-middle)
COUNT_TOKENS = "messages.count_tokens"  # Anthropic's POST /v1/messages/count_tokens, for Anthropic models
RESPONSES = "responses"  # OpenAI's Responses API: POST /v1/responses
# GET and DELETE /v1/responses/{id} of a response an openai model's provider keeps: its body is
# {"model", "response_id"}. Responses the gateway keeps itself are served by the API, with no job.
RESPONSES_RETRIEVE = "responses.retrieve"
RESPONSES_DELETE = "responses.delete"
ENDPOINTS = (CHAT_COMPLETIONS, MESSAGES, EMBEDDINGS, COMPLETIONS, COUNT_TOKENS, RESPONSES, RESPONSES_RETRIEVE,
             RESPONSES_DELETE)

# Slack given to RQ's own timers, which only back up the deadline the job checks itself.
RQ_TIMEOUT_MARGIN = 5
# A queued job outlives its deadline this long, so the worker sees it and can count
# and log the drop; RQ's ttl then discards whatever no worker took at all.
RQ_QUEUE_TTL_MARGIN = 30


@dataclass(frozen=True)
class JobRequest:
    job_id: str
    request_id: str
    model: str  # the configured model that serves the request (its queue)
    requested_model: str  # the name the client asked for; answers carry it
    endpoint: str
    body: dict
    deadline: float  # epoch seconds; the whole request must finish by then
    enqueued_at: float = field(default_factory=time.time)
    caller: dict = field(default_factory=dict)  # identity fields for logs, never credentials
    reservation: dict = field(default_factory=dict)  # rate-limit admission the worker settles
    route: str | None = None  # the route that admitted it: a label for token metrics
    stream: bool = False
    stream_seconds: float = 0.0  # a stream may run this long after its first chunk
    # Client headers a passthrough forwards (api: FORWARDED_HEADERS, e.g. anthropic-beta); never credentials.
    client_headers: dict = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        # Shallow on purpose: dataclasses.asdict() would deep-copy the whole prompt.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> JobRequest:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def remaining(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)

    def rq_job_timeout(self) -> int:
        """RQ's own job timeout: a backstop a little past the deadline (and the stream's length)."""
        return max(1, math.ceil(self.remaining() + self.stream_seconds)) + RQ_TIMEOUT_MARGIN

    def rq_queue_ttl(self) -> int:
        """How long RQ may keep the job queued (a backstop: the worker drops late jobs)."""
        return max(1, math.ceil(self.remaining())) + RQ_QUEUE_TTL_MARGIN
