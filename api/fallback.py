"""Fallback models: which failures move a request to another model, in which order, and how it is re-admitted.

A model may name ``fallbacks`` (other configured models, in order) and a
``context_window_fallback`` (a larger one). The worker never switches models
itself: when every deployment of its model is out, or kept failing within the
deadline, it answers the job with an error before anything reached the client
(``shared.errors``: ``deployments_unavailable``, ``upstream_rate_limited``,
``upstream_error``, ``upstream_auth_error``, ``upstream_model_not_found``;
``context_length_exceeded`` for a prompt too long), and the API re-routes the
request here:

- the next candidate is the failed model's own ``fallbacks``, then the requested
  model's (for a context-length failure: the failed model's
  ``context_window_fallback``), each model tried at most once per request;
- the candidate must be one the routes allow the caller by its own name (a route
  that sends that name elsewhere, or none, skips it), and the refusal the client
  may get names nothing of it: a fallback the caller may not use is invisible;
- its first reservation is released (``RateLimiter.refund``: a no-op for whatever
  the worker already settled), then the candidate is admitted like any request
  (``Admission.queue``): its workers, its queue's limit and its rate limits, its
  own queue, so per-model worker scaling still holds; a candidate that refuses is
  skipped;
- the job keeps the request's one deadline (no fresh timeout per model), the name
  the client asked for (answers carry it) and the client's wire format (the
  worker translates to the fallback's type, as for any model).

When no candidate serves, the client gets the requested model's own error: a
fallback only ever improves on the answer (a request whose deadline passed
meanwhile is answered 504, whichever process noticed it first).

A stream falls back only while its reply has no chunk: once the first chunk is
in, the response is committed and a failure ends it with an error event
(``api.streaming``), never with a second answer after half of the first. Peers
got this wrong: LiteLLM did not fall back at all for errors raised inside the
stream iterator (BerriAI/litellm#6957, #26067), replayed a partial answer from
the start when a mid-stream error was taken for a pre-first-chunk one
(BerriAI/litellm#32835), and answered 200 with a half-started stream when the
fallback failed too before its content (BerriAI/litellm#38610). Here the API
commits only on a chunk of the model that serves, so neither can happen.

The access record says what happened (``fallback_from``: the model that failed,
``fallback_reason``: its error code, ``fallbacks_skipped``: the candidates passed
over and why) and ``aigw_fallbacks_total`` counts it. A request of a model without
fallbacks never reaches this module: no Redis command, no work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from shared import errors, metrics
from shared.config import GatewayConfig, ModelConfig
from shared.replies import Reply

if TYPE_CHECKING:  # admission imports this module
    from api.admission import Admission, Admitted, Ask
    from api.answers import Answers

# The worker's error codes that mean "this model cannot serve it now", whatever the request (sent
# before anything reached the client): every deployment out or failing, the provider's rate limit
# after the retries, its key refused or its model id unknown (the deployment's fault, which the
# breaker marks failed: the next requests go straight to the fallback).
FALLBACK_CODES = frozenset({errors.DeploymentsUnavailable.code, errors.UpstreamRateLimited.code,
                            errors.UpstreamError.code, errors.UpstreamAuthError.code,
                            errors.UpstreamModelNotFound.code})
CONTEXT_LENGTH_EXCEEDED = errors.ContextLengthExceeded.code
# The request itself ended (its one deadline passed, its client left): answered as such, by any model.
REQUEST_ENDED = frozenset({errors.DeadlineExceeded.code, errors.RequestCancelled.code})
# Why a candidate was passed over, in the access record.
NO_ROUTE, NO_WORKERS, QUEUE_FULL, RATE_LIMITED = "no_route", "no_workers", "queue_full", "rate_limited"


@dataclass(frozen=True)
class Trail:
    """A request that may fall back: the model the routes chose, what it asks, the models tried."""

    primary: ModelConfig
    ask: Ask
    tried: tuple[str, ...]
    # The requested model's own error when it was passed over before any job (its breakers open):
    # what the client gets if no fallback serves.
    refusal: errors.GatewayError | None = None


def candidates(config: GatewayConfig, trail: Trail, failed: ModelConfig, code: str) -> list[ModelConfig]:
    """The models to try next, in order, after ``failed`` answered ``code``."""
    if code == CONTEXT_LENGTH_EXCEEDED:
        names: tuple[str, ...] = (failed.context_window_fallback,) if failed.context_window_fallback else ()
    elif code in FALLBACK_CODES:
        names = failed.fallbacks + trail.primary.fallbacks
    else:
        return []
    found = []
    for name in dict.fromkeys(names):
        model = config.model(name) if name not in trail.tried else None
        if model is not None:
            found.append(model)
    return found


def reachable(config: GatewayConfig, model: ModelConfig) -> set[str]:
    """The models a request for ``model`` may end up on: its ``fallbacks`` and
    ``context_window_fallback``, theirs, and so on (``model`` itself not included unless a chain
    comes back to it). A Responses API answer one of them produced continues there
    (``api.resources.responses``)."""
    found: set[str] = set()
    pending = [model]
    while pending:
        current = pending.pop()
        names = current.fallbacks + ((current.context_window_fallback,) if current.context_window_fallback else ())
        for name in names:
            nxt = config.model(name)
            if nxt is not None and name not in found:
                found.add(name)
                pending.append(nxt)
    return found


def readmit(req, admission: Admission, trail: Trail, failed: ModelConfig, code: str,
            release: dict | None = None) -> tuple[Admitted | None, Trail]:
    """Queue the request for the first candidate after ``failed`` (which answered ``code``) that
    the caller may use and that admits it; ``release``: the failed job's reservation, given back
    first. None when no candidate did (and the trail with them tried)."""
    ctx = req.context
    skipped: list[str] = []
    for model in candidates(admission.config, trail, failed, code):
        if trail.ask.deadline <= time.time():
            break  # the request's one deadline has passed: nothing more may be tried
        trail = replace(trail, tried=trail.tried + (model.name,))
        decision = admission.router.allowed(ctx.identity, model.name)
        if decision is None or decision.model.name != model.name:
            skipped.append(f"{model.name}:{NO_ROUTE}")
            continue
        if release:
            admission.limiter.refund(release)  # the failed model's allowance: the request moves on
            release = None
        scope = ctx.log.get("rate_limit_scope")
        try:
            admitted = admission.queue(ctx, model, decision.route, trail.ask, trail)
        except (errors.NoWorkers, errors.QueueFull, errors.RateLimited) as refusal:
            why = {errors.NoWorkers: NO_WORKERS, errors.QueueFull: QUEUE_FULL}.get(type(refusal), RATE_LIMITED)
            skipped.append(f"{model.name}:{why}")
            _restore(ctx.log, "rate_limit_scope", scope)  # the client's answer is not this refusal
            continue
        _note_skipped(ctx.log, skipped)
        ctx.log.setdefault("fallback_from", failed.name)
        ctx.log.setdefault("fallback_reason", code)
        ctx.log.update({"destination": model.name, "route": decision.route_name})
        metrics.FALLBACKS.labels(failed.name, model.name, code).inc()
        return admitted, trail
    _note_skipped(ctx.log, skipped)
    return None, trail


def follow(req, admission: Admission, answers: Answers, admitted: Admitted, reply: Reply, *,
           client_gone: Callable[[], bool] | None = None) -> tuple[Admitted, Reply]:
    """After an admitted job answered ``reply``: while it is an error a fallback may improve on
    (nothing reached the client: an error reply is final and comes before any chunk), queue the
    request for the next candidate and wait for that. Answers the admitted job that served and
    its reply; when none did, the requested model's own error."""
    trail = admitted.trail
    original = (trail.refusal if trail is not None else None) or reply.error
    while reply.error is not None and trail is not None:
        moved, trail = readmit(req, admission, trail, admitted.model, reply.error.code,
                               release=admitted.job.reservation)
        if moved is None:
            break
        admitted = moved
        # The deadline's message names the requested model, whose timeout the deadline is.
        reply = answers.wait(trail.primary, admitted.job, client_gone=client_gone)
    if reply.error is not None and trail is not None and admitted.model.name != trail.primary.name:
        req.context.log["fallback_error"] = reply.error.code
        if reply.error.code not in REQUEST_ENDED:  # the request's own end is the answer, whoever saw it
            reply = replace(reply, error=original, status=original.status)
    return admitted, reply


def _note_skipped(record: dict, skipped: list[str]) -> None:
    if skipped:
        record.setdefault("fallbacks_skipped", []).extend(skipped)


def _restore(record: dict, key: str, value) -> None:
    if value is None:
        record.pop(key, None)
    else:
        record[key] = value
