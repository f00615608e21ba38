"""Fallback models (api.fallback), against a real Redis (embedded): which failures move a request,
in which order; the routes, workers and rate limits of the fallback apply and the first reservation is
released; a fallback the caller may not use is skipped and never named; the request keeps its one
deadline and its requested name; a refused or failed fallback leaves the client the requested model's
own error; a breaker that says every deployment is out sends the request straight to a fallback."""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from api import admission as admission_module
from api import fallback
from api.admission import Admission, WorkerLiveness
from api.identity import Identity
from api.resources.inference import respond
from api.routing import Router
from shared import errors
from shared.config import parse_config
from shared.jobs import CHAT_COMPLETIONS, MESSAGES
from shared.ratelimit import RateLimiter
from shared.replies import CHUNK, ERROR, RESULT, Reply
from workers.worker_classes import ThreadedWorker

CONFIG = {
    "models": [
        {"name": "a", "type": "generic", "base_url": "http://127.0.0.1:9/v1", "timeout": "20s",
         "fallbacks": ["b", "c", "d"], "context_window_fallback": "big", "rate_limit": {"requests_per_minute": 5}},
        {"name": "b", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "timeout": "3s",
         "rate_limit": {"requests_per_minute": 1}},
        {"name": "c", "type": "generic", "base_url": "http://127.0.0.1:9/v1"},
        {"name": "d", "type": "generic", "base_url": "http://127.0.0.1:9/v1"},
        {"name": "big", "type": "anthropic", "base_url": "http://127.0.0.1:9", "fallbacks": ["d"]},
        {"name": "plain", "type": "generic", "base_url": "http://127.0.0.1:9/v1"},
    ],
    # User 2 may use a, b, d, big and plain, not c (only user 7 may); "alias" sends its name to c.
    "routes": [
        {"name": "everyone", "match": {"model_name": ["a", "b", "d", "big", "plain"]}},
        {"name": "seven", "match": {"gitlab_user_id": ["7"], "model_name": ["c"]}},
        {"name": "alias", "match": {"model_name": ["alias"]}, "destination": "c"},
    ],
}
BODY = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def config():
    return parse_config(CONFIG, {})


@pytest.fixture
def admission(client, config):
    return Admission(config, Router(config), RateLimiter(client), WorkerLiveness(client))


@pytest.fixture
def workers(client):
    worker = ThreadedWorker(["a", "b", "c", "d", "big", "plain"], connection=client, name="all.host.1")
    worker.register_birth()
    return worker


@pytest.fixture
def breaker(monkeypatch):
    """shared.breaker.unavailable as the admission sees it: which models' deployments are all out."""
    out: set[str] = set()
    asked: list[str] = []

    def unavailable(redis, model):
        asked.append(model.name)
        return model.name in out

    monkeypatch.setattr(admission_module.breaker, "unavailable", unavailable)
    return SimpleNamespace(out=out, asked=asked)


def request(user_id: str = "2", request_id: str = "req-1") -> SimpleNamespace:
    context = SimpleNamespace(identity=Identity(user_id, "alice", credential="token"), request_id=request_id, log={},
                              wire="openai", rate_headers={})
    return SimpleNamespace(context=context, env={})


def admit(admission, req=None, body=None, endpoint=CHAT_COMPLETIONS):
    return admission.admit(req or request(), endpoint=endpoint, body=body or BODY, may_fall_back=True)


def queued(client, model: str) -> list[str]:
    return [job_id.decode() for job_id in client.lrange(f"rq:queue:{model}", 0, -1)]


def error_reply(error: errors.GatewayError) -> Reply:
    return Reply(ERROR, status=error.status, error=error)


class ScriptedAnswers:
    """Answers.wait as the API sees it: each queued job's reply, in order (a worker's stand-in)."""

    def __init__(self, *replies: Reply):
        self.replies = list(replies)
        self.waited: list[tuple[str, str, float]] = []

    def wait(self, model, job, *, client_gone=None) -> Reply:
        self.waited.append((model.name, job.model, job.deadline))
        return self.replies.pop(0)


# -- the policy -----------------------------------------------------------------------------------------

def test_which_failures_fall_back_and_in_which_order(config):
    a, big = config.model("a"), config.model("big")
    trail = fallback.Trail(a, None, ("a",))
    names = lambda found: [model.name for model in found]  # noqa: E731
    for code in ("deployments_unavailable", "upstream_rate_limited", "upstream_error", "upstream_auth_error",
                 "upstream_model_not_found"):
        assert names(fallback.candidates(config, trail, a, code)) == ["b", "c", "d"]
    assert names(fallback.candidates(config, trail, a, "context_length_exceeded")) == ["big"]
    # The failed fallback's own fallbacks first, then the requested model's; each model once.
    tried = fallback.Trail(a, None, ("a", "big"))
    assert names(fallback.candidates(config, tried, big, "upstream_error")) == ["d", "b", "c"]
    assert names(fallback.candidates(config, fallback.Trail(a, None, ("a", "b")), a, "upstream_error")) == ["c", "d"]
    # A refusal of the request itself, the gateway's own answers and a client that left never fall back.
    for code in ("upstream_invalid_request", "invalid_request", "deadline_exceeded", "client_closed_request",
                 "worker_lost", "rate_limited", "queue_full", "no_workers"):
        assert fallback.candidates(config, trail, a, code) == []
    assert fallback.candidates(config, trail, config.model("b"), "context_length_exceeded") == []


# -- re-admission -------------------------------------------------------------------------------------

def test_the_fallback_is_queued_on_its_own_queue_with_the_request_s_deadline_name_and_wire(
        admission, client, workers, breaker):
    req = request()
    first = admit(admission, req, {**BODY, "stream": True}, endpoint=MESSAGES)
    assert first.trail is not None and first.trail.tried == ("a",)
    moved, trail = fallback.readmit(req, admission, first.trail, first.model, "deployments_unavailable",
                                    release=first.job.reservation)
    assert moved.model.name == "b" and trail.tried == ("a", "b") and moved.trail == trail
    assert queued(client, "b") == [moved.job.job_id] and moved.job.job_id != first.job.job_id
    job = moved.job
    assert (job.model, job.requested_model, job.endpoint, job.stream) == ("b", "a", MESSAGES, True)
    assert job.deadline == first.job.deadline  # one deadline for the request, not b's fresh 3 s
    assert job.stream_seconds == admission.config.model("b").max_stream_duration
    assert job.request_id == first.job.request_id and job.route == "everyone"
    assert req.context.log["fallback_from"] == "a" and req.context.log["fallback_reason"] == "deployments_unavailable"
    assert req.context.log["destination"] == "b" and "fallbacks_skipped" not in req.context.log
    assert moved.rate_headers["x-ratelimit-limit-requests"] == "1"  # b's own limit


def test_the_first_reservation_is_released_and_the_fallback_s_limits_apply(admission, client, workers, breaker):
    first = admit(admission)
    assert client.zcard("aigw:rl:model:a:requests:60:log") == 1
    req = request()
    moved, _ = fallback.readmit(req, admission, first.trail, first.model, "upstream_error",
                                release=first.job.reservation)
    assert moved.model.name == "b"
    assert client.zcard("aigw:rl:model:a:requests:60:log") == 0  # released
    assert client.zcard("aigw:rl:model:b:requests:60:log") == 1
    # b allows one a minute: the next request that falls back skips it for c... which user 2 may not
    # use, so d serves; the access record says why each was passed over.
    second = admit(admission, request(request_id="req-2"))
    req2 = request(request_id="req-2")
    moved2, trail = fallback.readmit(req2, admission, second.trail, second.model, "upstream_error",
                                     release=second.job.reservation)
    assert moved2.model.name == "d" and trail.tried == ("a", "b", "c", "d")
    assert req2.context.log["fallbacks_skipped"] == ["b:rate_limited", "c:no_route"]
    assert "rate_limit_scope" not in req2.context.log  # b's refusal is not the answer's
    assert queued(client, "c") == [] and len(queued(client, "b")) == 1


def test_a_fallback_without_workers_or_room_is_skipped(admission, client, config, breaker):
    ThreadedWorker(["a", "d"], connection=client, name="ad.host.1").register_birth()
    first = admit(admission)
    req = request()
    moved, _ = fallback.readmit(req, admission, first.trail, first.model, "upstream_error",
                                release=first.job.reservation)
    assert moved.model.name == "d" and req.context.log["fallbacks_skipped"] == ["b:no_workers", "c:no_route"]


def test_a_route_that_sends_the_fallback_s_name_elsewhere_does_not_admit_it(client, workers, breaker):
    routes = [{"name": "aliased", "match": {"model_name": ["b"]}, "destination": "plain"},
              {"name": "rest", "match": {"model_name": ["a", "c", "d"]}}]
    config = parse_config({**CONFIG, "routes": routes}, {})
    admission = Admission(config, Router(config), RateLimiter(client), WorkerLiveness(client))
    first = admit(admission)
    req = request()
    moved, _ = fallback.readmit(req, admission, first.trail, first.model, "upstream_error")
    assert moved.model.name == "c" and req.context.log["fallbacks_skipped"] == ["b:no_route"]
    assert queued(client, "plain") == []


def test_nothing_is_tried_once_the_request_s_deadline_has_passed(admission, client, workers, breaker):
    first = admit(admission)
    late = fallback.Trail(first.trail.primary, fallback_ask(first, deadline=time.time() - 1), ("a",))
    moved, _ = fallback.readmit(request(), admission, late, first.model, "upstream_error")
    assert moved is None and queued(client, "b") == []


def fallback_ask(admitted, **changes):
    return replace(admitted.trail.ask, **changes)


# -- following the replies ---------------------------------------------------------------------------

def test_an_error_reply_moves_the_request_until_a_fallback_serves(admission, client, workers, breaker):
    req = request()
    first = admit(admission, req)
    served = Reply(RESULT, body=b'{"model": "a"}', meta={"served_by": "b/default"})
    answers = ScriptedAnswers(served)
    admitted, reply = fallback.follow(req, admission, answers, first,
                                      error_reply(errors.DeploymentsUnavailable()))
    assert reply is served and admitted.model.name == "b"
    # The wait names the requested model (the deadline's own) and keeps the one deadline.
    assert answers.waited == [("a", "b", first.job.deadline)]


def test_when_no_fallback_serves_the_client_gets_the_requested_model_s_error(admission, client, workers, breaker):
    req = request()
    first = admit(admission, req)
    original = errors.DeploymentsUnavailable("Every deployment of model 'a' is unavailable right now.")
    answers = ScriptedAnswers(error_reply(errors.UpstreamError("provider of b said 500")),
                              error_reply(errors.UpstreamRejected("provider of d refused", status=400)))
    admitted, reply = fallback.follow(req, admission, answers, first, error_reply(original))
    assert reply.error is original and reply.status == 503
    assert [model for _, model, _ in answers.waited] == ["b", "d"]  # c: not for user 2
    assert admitted.model.name == "d"  # d's 400 ends it: not a failure a fallback improves on
    assert req.context.log["fallback_error"] == "upstream_invalid_request"
    assert req.context.log["fallbacks_skipped"] == ["c:no_route"]  # the operator's record, not the client's


def test_a_context_length_failure_moves_to_the_larger_model_only(admission, client, workers, breaker):
    req = request()
    first = admit(admission, req)
    answers = ScriptedAnswers(Reply(RESULT, body=b"{}"))
    admitted, _ = fallback.follow(req, admission, answers, first,
                                  error_reply(errors.ContextLengthExceeded("prompt is too long")))
    assert admitted.model.name == "big" and req.context.log["fallback_reason"] == "context_length_exceeded"


def test_a_stream_s_first_chunk_commits_it_and_a_request_without_fallbacks_never_moves(
        admission, client, workers, breaker):
    req = request()
    first = admit(admission, req)
    chunk = Reply(CHUNK, body=b"data: {}\n\n")
    assert fallback.follow(req, admission, ScriptedAnswers(), first, chunk) == (first, chunk)
    plain = admit(admission, request(), {**BODY, "model": "plain"})
    assert plain.trail is None and breaker.asked == ["a"]  # no breaker asked for a model without fallbacks
    no_fallback = admission.admit(request(), endpoint=CHAT_COMPLETIONS, body=BODY)  # may_fall_back False
    assert no_fallback.trail is None


def test_respond_answers_the_fallback_s_result_with_its_rate_headers(admission, client, workers, breaker):
    req = request()
    first = admit(admission, req)
    answers = ScriptedAnswers(error_reply(errors.UpstreamRateLimited("429 from the provider", retry_after=3)),
                              Reply(RESULT, body=b'{"model": "a", "id": "x"}'))
    resp = SimpleNamespace(status=None, data=None, content_type=None, set_header=lambda *a: None)
    respond(req, resp, answers, first, keepalive_interval=15, admission=admission)
    assert resp.data == b'{"model": "a", "id": "x"}' and resp.status == 200
    assert req.context.rate_headers["x-ratelimit-limit-requests"] == "1"  # b's
    assert req.context.log["fallback_reason"] == "upstream_rate_limited"


# -- straight to the fallback ---------------------------------------------------------------------------

def test_open_breakers_send_the_request_straight_to_the_fallback(admission, client, workers, breaker):
    breaker.out.add("a")
    req = request()
    admitted = admit(admission, req)
    assert admitted.model.name == "b" and queued(client, "a") == [] and queued(client, "b") == [admitted.job.job_id]
    assert client.zcard("aigw:rl:model:a:requests:60:log") == 0  # a took nothing
    assert req.context.log["fallback_from"] == "a" and req.context.log["breakers_open"] is True
    # b fails too, and nothing else serves: the client hears a's state, not b's.
    answers = ScriptedAnswers(error_reply(errors.UpstreamError("b said 500")),
                              error_reply(errors.UpstreamError("d said 500")))
    _, reply = fallback.follow(req, admission, answers, admitted, error_reply(errors.UpstreamError("b said 500")))
    assert reply.error.code == "deployments_unavailable" and "'a'" in reply.error.message


def test_open_breakers_with_no_fallback_admitting_queue_the_requested_model(admission, client, breaker):
    ThreadedWorker(["a"], connection=client, name="a.host.1").register_birth()
    breaker.out.add("a")
    req = request()
    admitted = admit(admission, req)
    assert admitted.model.name == "a" and admitted.trail.tried == ("a", "b", "c", "d")
    assert "fallback_from" not in req.context.log


def test_a_deadline_that_passed_during_the_fallback_is_answered_as_such(admission, client, workers, breaker):
    req = request()
    first = admit(admission, req)
    answers = ScriptedAnswers(error_reply(errors.DeadlineExceeded("The request waited past its deadline.")))
    _, reply = fallback.follow(req, admission, answers, first, error_reply(errors.UpstreamError("a said 500")))
    assert reply.error.code == "deadline_exceeded" and reply.status == 504


def test_each_fallback_is_counted_by_model_fallback_and_reason(admission, client, workers, breaker):
    def count():
        return REGISTRY.get_sample_value(
            "aigw_fallbacks_total", {"model": "a", "fallback": "b", "reason": "upstream_rate_limited"}) or 0

    before = count()
    first = admit(admission)
    fallback.readmit(request(), admission, first.trail, first.model, "upstream_rate_limited")
    assert count() == before + 1


# -- a Responses API answer a fallback produced ------------------------------------------------------------

def test_the_models_a_request_may_end_up_on_follow_every_chain(config):
    assert fallback.reachable(config, config.model("a")) == {"b", "c", "d", "big"}
    assert fallback.reachable(config, config.model("big")) == {"d"}
    assert fallback.reachable(config, config.model("plain")) == set()


def continuation(admission, client, *, holder: str, kind: str, user_id: str = "2", requested: str = "a",
                 asked: str | None = None):
    """POST /v1/responses continuing a response ``holder`` produced when ``requested`` was asked for,
    asking for ``asked`` (default: ``requested``)."""
    from api.resources.responses import CreateResponse
    from shared.jobs import RESPONSES
    from shared.responses_store import ResponseRecord, ResponsesStore
    store = ResponsesStore(client, ttl=60, max_bytes=100_000)
    record = ResponseRecord(user_id, holder, requested, kind)
    if kind == "relayed":
        store.note_relayed("resp_prev", record)
    else:
        store.keep("resp_prev", record, {"id": "resp_prev"}, [])
    req = request(user_id)
    body = {"model": asked or requested, "input": "and then?", "previous_response_id": "resp_prev"}
    return CreateResponse(admission, None, store).admit(req, body), req, RESPONSES


def test_a_continuation_of_a_fallback_s_relayed_answer_goes_to_that_fallback(admission, client, workers, breaker):
    admitted, req, endpoint = continuation(admission, client, holder="b", kind="relayed")
    assert admitted.model.name == "b" and admitted.trail is None  # the holder's queue, no further fallback
    assert admitted.job.requested_model == "a" and admitted.job.endpoint == endpoint
    assert queued(client, "b") == [admitted.job.job_id] and queued(client, "a") == []
    assert req.context.log["continued_on"] == "b" and req.context.log["destination"] == "b"
    with pytest.raises(errors.RateLimited):  # b's own limit (1 a minute) applies to it
        continuation(admission, client, holder="b", kind="relayed")


def test_a_continuation_the_caller_may_not_take_to_the_fallback_is_refused_naming_nothing_of_it(
        admission, client, workers, breaker):
    # c answered for "a" once; user 2 may not use c by its own name: refused, c never named.
    with pytest.raises(errors.InvalidRequest) as refused:
        continuation(admission, client, holder="c", kind="relayed")
    assert "cannot continue" in refused.value.message and "'c'" not in refused.value.message
    assert refused.value.param == "previous_response_id"
    assert queued(client, "a") == [] and queued(client, "c") == []
    # A model that is no fallback of the requested one: refused likewise, not moved there.
    with pytest.raises(errors.InvalidRequest):
        continuation(admission, client, holder="plain", kind="relayed")
    # The requested name differs from the one it answered: that name is the way to continue it.
    with pytest.raises(errors.InvalidRequest, match="continue it with that model"):
        continuation(admission, client, holder="b", kind="relayed", asked="plain")


def test_a_kept_conversation_a_native_model_cannot_continue_goes_to_the_fallback_that_translated_it(
        client, workers, breaker):
    models = [{**m, **({"fallbacks": ["c"]} if m["name"] == "b" else {})} for m in CONFIG["models"]]
    config = parse_config({"models": models}, {})  # no routes: everyone may use every model
    admission = Admission(config, Router(config), RateLimiter(client), WorkerLiveness(client))
    # b (openai) keeps its own responses; c (generic, translated) answered for b and the gateway kept it.
    admitted, _, _ = continuation(admission, client, holder="c", kind="stored", requested="b")
    assert admitted.model.name == "c" and admitted.job.requested_model == "b"
    # A kept conversation of a translated model's fallback continues on the requested model itself.
    admitted, _, _ = continuation(admission, client, holder="c", kind="stored", requested="a")
    assert admitted.model.name == "a"
