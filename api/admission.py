"""Admission: which model serves a request, and whether its limits allow it now.

In order: the routes pick the model (404 / 403), a model without live workers
is refused before any allowance is taken (503), then one atomic check takes
from every rate limit that applies or refuses with 429 naming the scope that
refused. Nothing refused here is ever enqueued.
"""

from __future__ import annotations

import math

from api.dispatch import Dispatcher
from api.routing import Decision, Router
from shared import errors, metrics
from shared.ratelimit import RateLimited, RateLimiter, Reservation, estimate_tokens, limits_for


class Gate:
    def __init__(self, router: Router, limiter: RateLimiter, dispatcher: Dispatcher):
        self.router = router
        self.limiter = limiter
        self.dispatcher = dispatcher

    def admit(self, req, requested: str, body: dict) -> tuple[Decision, Reservation]:
        identity = req.context.identity
        decision = self.router.resolve(identity, requested)
        req.context.log.update({"model": requested, "destination": decision.model.name,
                                "route": decision.route_name})
        self.dispatcher.check_workers(decision.model)
        limits = limits_for(decision.model, decision.route, identity.user_id, identity.project_id)
        try:
            reservation = self.limiter.admit(limits, estimate_tokens(body, decision.model.max_output_tokens))
        except RateLimited as refused:
            req.context.rate_figures = refused.figures
            req.context.log["rate_limit_scope"] = refused.limit.scope
            metrics.RATE_LIMITED.labels(decision.model.name, refused.limit.scope_kind).inc()
            raise _refusal(refused) from None
        req.context.rate_figures = reservation.figures
        return decision, reservation


def _refusal(refused: RateLimited) -> errors.RateLimited:
    limit = refused.limit
    if refused.retry_after is None:
        return errors.RateLimited(
            f"This request alone needs more than {limit.label} allows ({limit.describe()}): "
            "ask for fewer max_tokens or send a shorter prompt.", should_retry=False)
    wait = max(1, math.ceil(refused.retry_after))
    return errors.RateLimited(f"Rate limit reached for {limit.label}: {limit.describe()}. "
                              f"Try again in {wait} s.", retry_after=wait)
