"""``POST /v1/messages/count_tokens`` (Anthropic's token counting; ``?beta=true`` too).

For an Anthropic model the count is Anthropic's own: a job on the model's queue that
takes no rate-limit allowance (counting costs no tokens) and calls the provider's
``/v1/messages/count_tokens`` with the body untouched but ``model``, and the client's
``anthropic-version`` and ``anthropic-beta``. Other models have no such endpoint: the
API answers at once with the estimate the rate limiter reserves for a prompt
(``shared.ratelimit.estimate_tokens``: about four characters a token over ``system``,
``messages`` and ``tools``, keys included, without the answer's allowance). Either way
the caller must be allowed the model by the routes; errors come in Anthropic's format.
"""

from __future__ import annotations

from api.admission import Admission
from api.answers import Answers
from api.forwarded_headers import ANTHROPIC, client_headers
from api.resources.inference import respond
from api.validation import validate_count_tokens
from shared.jobs import COUNT_TOKENS
from shared.ratelimit import estimate_tokens

COUNTED = ("system", "messages", "tools")


def estimated_input_tokens(body: dict) -> int:
    return estimate_tokens({key: body.get(key) for key in COUNTED}, 0)


class CountTokens:
    endpoint = COUNT_TOKENS  # the label in request metrics
    wire = "anthropic"

    def __init__(self, admission: Admission, answers: Answers, *, keepalive_interval: float = 15.0):
        self.admission = admission
        self.answers = answers
        self.keepalive_interval = keepalive_interval

    def on_post(self, req, resp) -> None:
        body = validate_count_tokens(req.get_media())
        decision = self.admission.router.resolve(req.context.identity, body["model"])
        if decision.model.type == "anthropic":
            admitted = self.admission.admit(req, endpoint=COUNT_TOKENS, body=body, rate_limited=False,
                                            client_headers=client_headers(req, ANTHROPIC))
            respond(req, resp, self.answers, admitted, keepalive_interval=self.keepalive_interval)
            return
        req.context.log.update({"model": body["model"], "destination": decision.model.name,
                                "route": decision.route_name, "estimated": True})
        resp.media = {"input_tokens": estimated_input_tokens(body)}
