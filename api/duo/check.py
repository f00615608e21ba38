"""POST /v1/prompts/model_configuration%2Fcheck: the admin's "Test connection" of a self-hosted model.

GitLab waits 3 s (ee/lib/gitlab/llm/ai_gateway/self_hosted_models/tasks/model_config_check.rb) and
reads only the status: 200 is success; 421 shows ``detail`` as "The self-hosted model server returned
code <detail>"; any other shows "AI Gateway returned code N: <detail[0].msg>" (a string ``detail``
becomes "Unknown error"). So every refusal here but the JWT's is a 422 with a list ``detail``.

The probe is a minimal real call (GitLab's AI gateway's model_configuration/check prompt, 16 tokens),
queued at the front of the model's queue, without any rate limit's allowance, and given
``CHECK_SECONDS`` from the request's arrival. When no worker takes it in time (the workers are busy, or
the queue is at its limit), the model still maps and has live workers: the answer is 200, the probe
leaves the queue, and the access record says ``duo_probe: not_probed``. A probe a worker took but the
model did not answer in time is a 422, as GitLab's own wait would have ended.
"""

from __future__ import annotations

import logging
import time
import uuid

from api.duo import jobs
from api.duo.model_errors import DuoModelServerError, model_server_error
from api.duo.models import DuoInvalid, first_configured, identifier_name
from api.duo.resources import COMPLETE_CODE, DuoEndpoint
from api.duo.shapes import answer_text
from shared.breaker import read_states
from shared.errors import DeadlineExceeded, GatewayError
from shared.jobs import JobRequest
from shared.ratelimit import Reservation, WriteRefused
from shared.rq_records import job_enqueue, take_waiting

log = logging.getLogger("aigw.api")

CHECK_SECONDS = 2.5  # of GitLab's 3 s, from the request's arrival


class ModelCheck(DuoEndpoint):
    feature = "model_configuration_check"
    unit_primitives = COMPLETE_CODE

    def on_post(self, req, resp) -> None:
        body = self.caller(req)
        try:
            model = self._model(body)
            answer = self._probe(req, model)
        except (DuoModelServerError, DuoInvalid):
            raise
        except GatewayError as error:  # no route, no workers, the model's deadline...: said as GitLab shows it
            raise DuoInvalid(error.message) from None
        resp.media = answer

    def _model(self, body: dict):
        """The model the self-hosted model's identifier or name names, else the first Duo feature's."""
        metadata = body.get("model_metadata") if isinstance(body.get("model_metadata"), dict) else {}
        config = self.duo.config
        model = first_configured(config, (identifier_name(metadata.get("identifier")), metadata.get("name"),
                                          *config.duo.features.values()))
        if model is not None:
            return model
        raise DuoInvalid("This self-hosted model maps to no model of this AI gateway: give it the identifier "
                         "custom_openai/<model> naming a model in the gateway's config.")

    def _probe(self, req, model) -> str:
        ctx = req.context
        admission = self.duo.admission
        decision = admission.router.resolve(ctx.identity, model.name)
        ctx.log.update({"model": model.name, "destination": model.name, "route": decision.route_name})
        if admission.liveness.count(model.name) == 0:
            raise DuoInvalid(f"No worker is serving model '{model.name}' right now.")
        left = CHECK_SECONDS - (time.perf_counter() - ctx.started)
        job = jobs.check(model)
        request = JobRequest(job_id=uuid.uuid4().hex, request_id=ctx.request_id, model=model.name,
                             requested_model=model.name, endpoint=job.endpoint, body=job.body,
                             deadline=time.time() + max(0.0, left), caller=ctx.identity.job_fields(),
                             route=decision.route_name)
        enqueue = job_enqueue(request, max_depth=model.max_queue_depth, result_ttl=self.duo.config.jobs.result_ttl,
                              failure_ttl=self.duo.config.jobs.failure_ttl, front=True)
        try:
            admission.limiter.take(Reservation.of([], 0), enqueue)
        except WriteRefused:  # the queue is at its limit: no worker would take it in time
            return self._not_probed(req, model)
        try:
            reply = self.duo.answers.wait(model, request)
        except DeadlineExceeded:
            if take_waiting(self.duo.answers.redis, model.name, request.job_id):  # no worker took it
                return self._not_probed(req, model)
            raise self._unanswered(req) from None
        if isinstance(reply.error, DeadlineExceeded):  # the worker's own deadline came first
            raise self._unanswered(req)
        if reply.error is not None:
            shown = model_server_error(reply.error, lambda: read_states(self.duo.answers.redis, model))
            raise shown or DuoInvalid(reply.error.message)
        ctx.log["duo_probe"] = "answered"
        return answer_text(job.endpoint, reply.body)[0]

    def _unanswered(self, req) -> DuoInvalid:
        req.context.log["duo_probe"] = "unanswered"
        return DuoInvalid(f"The model took the check but did not answer within {CHECK_SECONDS:g} s.")

    def _not_probed(self, req, model) -> str:
        req.context.log["duo_probe"] = "not_probed"
        log.warning("model check not probed: no worker took it in time; the model maps and has live workers",
                    extra={"model": model.name})
        return ""
