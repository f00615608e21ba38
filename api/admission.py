"""Admission: which model serves a request, and whether its limits allow it now.

In order: the routes pick the model (404 / 403), a model without live workers
is refused before any allowance is taken (503), then the dispatcher enqueues
the job with one atomic check (``Dispatcher.enqueue``): the model's queue limit
(503), then every rate limit that applies, taken from all or refused with 429
naming the scope that refused. A refused job is taken back in the same
transaction, so no worker ever sees it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from api.dispatch import Dispatcher
from api.rate_headers import headers_for
from api.routing import Decision, Router
from shared import errors, metrics
from shared.ratelimit import RateLimited, Reservation, estimate_tokens, limits_for


class Gate:
    def __init__(self, router: Router, dispatcher: Dispatcher):
        self.router = router
        self.dispatcher = dispatcher

    def prepare(self, req, requested: str, body: dict) -> tuple[Decision, Reservation]:
        """The route's model, checked for workers, and the reservation its limits will take."""
        identity = req.context.identity
        decision = self.router.resolve(identity, requested)
        req.context.log.update({"model": requested, "destination": decision.model.name,
                                "route": decision.route_name})
        self.dispatcher.check_workers(decision.model)
        limits = limits_for(decision.model, decision.route, identity.user_id, identity.project_id)
        tokens = max(0, estimate_tokens(body, decision.model.max_output_tokens))
        return decision, Reservation(uuid.uuid4().hex, limits, tokens)

    @contextmanager
    def admitting(self, req, decision: Decision, reservation: Reservation) -> Iterator[None]:
        """Around the enqueue: a limit's refusal becomes the client's 429, with its figures.
        The rate-limit headers are made here, while the request waits, not on its answer's way."""
        try:
            yield
        except RateLimited as refused:
            req.context.rate_headers = headers_for(refused.figures, req.context.wire)
            req.context.log["rate_limit_scope"] = refused.limit.scope
            metrics.RATE_LIMITED.labels(decision.model.name, refused.limit.scope_kind).inc()
            raise _refusal(refused) from None
        req.context.rate_headers = headers_for(reservation.figures, req.context.wire)


def _refusal(refused: RateLimited) -> errors.RateLimited:
    limit = refused.limit
    if refused.retry_after is None:
        return errors.RateLimited(
            f"This request alone needs more than {limit.label} allows ({limit.describe()}): "
            "ask for fewer max_tokens or send a shorter prompt.", should_retry=False)
    wait = max(1, math.ceil(refused.retry_after))
    return errors.RateLimited(f"Rate limit reached for {limit.label}: {limit.describe()}. "
                              f"Try again in {wait} s.", retry_after=wait)
