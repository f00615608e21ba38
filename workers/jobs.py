"""The job function the worker runs for every gateway request, and its failure callback.

The outcome always goes back through the reply stream (``shared.replies``), so
the waiting API process wakes at once, whatever happened. The RQ job itself is
recorded failed when the gateway or the provider failed (5xx, 429), so RQ's
failed registry shows real trouble; a request the provider refused as invalid
answered its client like any other, and its job leaves no record
(``shared.rq_records``).
"""

from __future__ import annotations

import json
import logging
import time

from rq import get_current_job
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from shared import metrics
from shared.config import ModelConfig
from shared.durations import format_duration
from shared.errors import DeadlineExceeded, GatewayError, RequestCancelled, WorkerLost
from shared.jobs import JobRequest
from shared.logs import current_request_id
from shared.replies import DROPPED_PARAMS, SERVED_BY, Backlog, ReplyChannel
from shared.usage import token_counts, usage_total
from workers.cancel import CLIENT_GONE, CancelScope, cancelled_error, current_scope
from workers.job_end import current_job_end
from workers.runtime import get_runtime
from workers.worker_classes import JobAbandoned

log = logging.getLogger("aigw.worker")
PAYLOAD_FIELDS = ("system", "messages", "prompt", "suffix", "input", "instructions", "tools")


class JobFailed(Exception):
    """Raised after the failure was already sent to the client, to mark the RQ job failed."""


def execute(payload: dict) -> dict:
    request = JobRequest.from_dict(payload)
    token = current_request_id.set(request.request_id)  # on every record logged for this job
    try:
        return _execute(request)
    finally:
        current_request_id.reset(token)


def _execute(request: JobRequest) -> dict:
    job = get_current_job()
    runtime = get_runtime()
    channel = ReplyChannel(job.connection, request.job_id, ttl=runtime.config.jobs.result_ttl)
    fields = {"request_id": request.request_id, "job_id": request.job_id, "model": request.model,
              "requested_model": request.requested_model, **request.caller}
    started = time.time()
    # Computed once, here: the job's record, the metric and (through the reply) the access record.
    waited = max(0.0, started - request.enqueued_at)
    fields["queue_wait_ms"] = round(waited * 1000, 2)
    metrics.QUEUE_WAIT.labels(request.model).observe(waited)
    scope = current_scope()
    if scope is not None:
        scope.deadline = request.deadline  # the worker's monitor cancels the call past it
    limiter = runtime.limiter(job.connection)
    # The answer and the settlement go out with the job's records, in one round trip (workers.job_end).
    end = current_job_end(job.connection)
    if request.remaining(started) <= 0:
        log.warning("job dropped: its deadline passed while it was queued",
                    extra={**fields, "outcome": "dropped", "reason": "deadline"})
        metrics.JOBS_DROPPED.labels(request.model, "deadline").inc()
        dropped = DeadlineExceeded("The request waited in the queue past its deadline.")
        end.answer(lambda pipe: channel.send_error(dropped, pipe=pipe))
        end.settle(lambda pipe: limiter.refund(request.reservation, pipe=pipe))  # the provider never saw it
        return {"outcome": "dropped", "reason": "deadline"}
    emit = Emitter(channel, scope, request, max_unread=runtime.config.jobs.max_unread_reply_bytes,
                   idle_timeout=_idle_timeout(runtime, request)) if request.stream else None
    try:
        outcome = runtime.serve(request, emit)
    except GatewayError as error:
        failure = error  # the name ``error`` is gone once this block ends; the writes below run later
        meta = {"queue_wait_ms": fields["queue_wait_ms"], "upstream_seconds": round(time.time() - started, 4),
                "chunks": emit.sent if emit else 0}
        if isinstance(error, RequestCancelled):
            metrics.JOBS_DROPPED.labels(request.model, "cancelled").inc()
        # The answer first: a worker killed before the settlement leaves a job whose client has
        # its answer, which its supervisor never requeues, so nothing settles the reservation twice.
        end.answer(lambda pipe: channel.send_error(failure, meta, pipe=pipe))
        if not (emit and emit.sent):
            end.settle(lambda pipe: _settle(limiter, request, scope, None, pipe))
        else:  # chunks already reached the client: tokens were spent; keep the estimate
            end.settle(lambda pipe: limiter.keep(request.reservation, pipe=pipe))
        end.after(lambda: _log_outcome(fields, failure.status, started, code=failure.code, stream=request.stream))
        if error.status >= 500 or error.status == 429:
            raise JobFailed(f"{error.code}: {error.message}") from None
        return {"outcome": "error", "status": error.status, "code": error.code}
    except Exception as exc:
        log.exception("job failed unexpectedly", extra=fields)
        end.answer(lambda pipe: channel.send_error(GatewayError(), pipe=pipe))
        raise JobFailed(f"internal_error: {type(exc).__name__}") from exc
    meta = {"queue_wait_ms": fields["queue_wait_ms"], "attempts": outcome.attempts,
            "upstream_seconds": outcome.upstream_seconds, "retry_reasons": outcome.retry_reasons,
            "usage": outcome.usage}
    if outcome.dropped:
        meta[DROPPED_PARAMS] = outcome.dropped
    if outcome.served_by:  # which deployment served it: the x-aigw-served-by header, the access record
        meta[SERVED_BY] = fields[SERVED_BY] = outcome.served_by
    if emit is not None:
        meta["chunks"] = emit.sent
        end.answer(lambda pipe: channel.send_end(meta, pipe=pipe))
    else:
        end.answer(lambda pipe: channel.send_result(outcome.status, outcome.body, meta, pipe=pipe))
    end.settle(lambda pipe: _settle(limiter, request, scope, outcome.usage or {}, pipe))
    end.after(lambda: _answered(runtime, request, outcome, fields, started))
    return {"outcome": "ok", "status": outcome.status, "attempts": outcome.attempts}


def _answered(runtime, request: JobRequest, outcome, fields: dict, started: float) -> None:
    """A job's token metrics and log line, once its answer is out."""
    if outcome.usage:
        prompt, completion = token_counts(outcome.usage)
        metrics.TOKENS.labels(request.model, "prompt", request.route or "-").inc(prompt)
        metrics.TOKENS.labels(request.model, "completion", request.route or "-").inc(completion)
    if runtime.config.logging.log_payloads:  # off by default: prompts are the users' data
        fields["prompt"] = {k: request.body[k] for k in PAYLOAD_FIELDS if k in request.body}
        if outcome.body:
            fields["completion"] = json.loads(outcome.body)
    _log_outcome(fields, outcome.status, started, attempts=outcome.attempts, usage=outcome.usage,
                 stream=request.stream)


class Emitter:
    """Hands a stream's framed chunks to the reply stream; the first one commits it.

    At most ``max_unread`` bytes of chunks stay unread in Redis: past that, the next
    chunk waits until the client has been relayed half of them (``_wait_for_reader``),
    and since the provider's stream is read only between chunks, the provider is
    held back by TCP meanwhile. A client that reads nothing for ``idle_timeout``
    is given up: the job is cancelled as if the client had left.
    """

    POLL_FIRST = 0.005  # seconds between looks at the stream while waiting, doubling...
    POLL_MAX = 0.2  # ...up to this

    def __init__(self, channel: ReplyChannel, scope: CancelScope | None, request: JobRequest, *,
                 max_unread: int, idle_timeout: float):
        self.channel = channel
        self.scope = scope
        self.request = request
        self.stream_seconds = request.stream_seconds
        self.backlog = Backlog(channel, max_unread)
        self.idle_timeout = idle_timeout
        self.sent = 0

    def __call__(self, data: bytes, meta: dict | None = None) -> None:
        """``meta``: facts the API needs before it commits the stream (shared.replies), sent
        with the first chunk only."""
        if not self.sent:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.request.model).observe(time.time() - self.request.enqueued_at)
            if self.scope is not None:
                # Committed: from here the stream's own length bounds it, not the first-chunk deadline.
                self.scope.deadline = time.time() + self.stream_seconds
        elif self.backlog.over and self.backlog.refresh() > self.backlog.limit:
            self._wait_for_reader()
        if not self.channel.send_chunk(data, lasts=None if self.sent else self.stream_seconds,
                                       meta=None if self.sent else meta):
            self._stop("its reader has ended", RequestCancelled("Nobody reads this stream any more."))
        self.backlog.wrote(len(data))
        self.sent += 1

    def _wait_for_reader(self) -> None:
        """Until half the limit or less is unread; bounded by the idle timeout (no chunk
        relayed meanwhile) and by the job's scope (deadline, client gone, shutdown)."""
        low = self.backlog.limit // 2
        unread = self.backlog.unread
        progress = time.monotonic()
        interval = self.POLL_FIRST
        while unread > low:
            if self.scope is not None and self.scope.cancelled:
                raise cancelled_error(self.scope)
            if time.monotonic() - progress >= self.idle_timeout:
                self._give_up(unread)
            if self.scope is not None:
                self.scope.sleep(interval)
            else:
                time.sleep(interval)
            interval = min(interval * 2, self.POLL_MAX)
            left = self.backlog.entries_left
            unread = self.backlog.refresh()
            if self.backlog.entries_left < left:  # any chunk relayed, not only a whole block's worth
                progress = time.monotonic()

    def _give_up(self, unread: int) -> None:
        idle = format_duration(self.idle_timeout)
        self._stop(f"its client read nothing of the stream for {idle}",
                   RequestCancelled(f"The client read nothing of the stream for {idle}."), unread_bytes=unread)

    def _stop(self, why: str, error: RequestCancelled, **extra) -> None:
        log.info("job cancelled: %s", why, extra={"job_id": self.request.job_id, "request_id": self.request.request_id,
                                                   "model": self.request.model, **extra})
        if self.scope is not None:
            self.scope.cancel(CLIENT_GONE)  # shuts the provider's connection down at once
        raise error


def _idle_timeout(runtime, request: JobRequest) -> float:
    model = runtime.config.model(request.model)
    return model.stream_idle_timeout if model is not None else ModelConfig.stream_idle_timeout


def on_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ calls this when a job fails; answer the client unless ``execute`` already did."""
    if isinstance(exc_value, JobFailed):
        return
    if isinstance(exc_value, JobTimeoutException):
        error: GatewayError = DeadlineExceeded()
    elif isinstance(exc_value, (AbandonedJobError, JobAbandoned)):
        error = WorkerLost()
    else:
        error = GatewayError()
    ttl = get_runtime().config.jobs.result_ttl
    ReplyChannel(connection, job.id, ttl=ttl).send_error(error)


def _settle(limiter, request: JobRequest, scope, usage: dict | None, pipe) -> None:
    """Correct the rate-limit reservation (on ``pipe``, or at once without one): all back if
    the provider never saw the request, else the token estimate replaced by the usage
    reported (none reported on a failure: 0)."""
    if not request.reservation:
        return
    if scope is not None and scope.upstream_attempts == 0:
        limiter.refund(request.reservation, pipe=pipe)
    elif usage is None:
        limiter.reconcile(request.reservation, 0, pipe=pipe)
    elif usage_total(usage) is not None:
        limiter.reconcile(request.reservation, usage_total(usage), pipe=pipe)
    else:  # a success without any usage reported keeps its estimate
        limiter.keep(request.reservation, pipe=pipe)


def _log_outcome(fields: dict, status: int, started: float, **extra) -> None:
    log.info("job done", extra={**fields, **extra, "status": status,
                                "duration_ms": round((time.time() - started) * 1000, 1)})
