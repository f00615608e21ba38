"""Putting a request on its model's queue and waiting for the answer.

The data goes one way: the API enqueues an RQ job (JSON only) and blocks on the
job's reply stream until the worker answers or the model's deadline passes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue

from shared.config import GatewayConfig, ModelConfig
from shared.durations import format_duration
from shared.errors import DeadlineExceeded, NoWorkers, QueueFull, RequestCancelled
from shared.jobs import JobRequest
from shared.keys import JOB_FAILURE_CALLBACK, JOB_FUNCTION, cancel_key, queue_name
from shared.queues import live_workers
from shared.ratelimit import QueueAtLimit, RateLimiter, Reservation
from shared.replies import CHUNK, ClientGone, Reply, ReplyChannel
from shared.serializers import JobSerializer

log = logging.getLogger("aigw.api")

LIVENESS_CACHE_SECONDS = 1.0


class WorkerLiveness:
    """Counts live RQ workers on a queue, cached briefly: it is asked on every request."""

    def __init__(self, redis: Redis, cache_seconds: float = LIVENESS_CACHE_SECONDS):
        self.redis = redis
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def count(self, model_name: str, *, fresh: bool = False) -> int:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(model_name)
        # Only a positive count is trusted from the cache: "no workers" refuses requests,
        # so it is always checked afresh (a worker that just started counts at once).
        if cached and cached[1] > 0 and not fresh and now - cached[0] < self.cache_seconds:
            return cached[1]
        live = live_workers(self.redis, model_name)
        with self._lock:
            self._cache[model_name] = (now, live)
        return live


class Janitor:
    """Deletes read reply streams off the request path, in batches a moment after they
    were read: a delete sent at once took the process's GIL at the answer's first pause
    (writing its headers) and held the rest of the answer back. A key this misses still
    expires on its own."""

    BATCH_DELAY = 0.25  # seconds; a read reply stream outlives its answer by at most about this

    def __init__(self, redis: Redis, batch_delay: float = BATCH_DELAY):
        self.redis = redis
        self.batch_delay = batch_delay
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="reply-janitor", daemon=True).start()

    def discard(self, key: str) -> None:
        self._keys.put(key)

    def _run(self) -> None:
        while True:
            keys = [self._keys.get()]
            time.sleep(self.batch_delay)  # gathers the keys read meanwhile, off their answers' way
            while True:
                try:
                    keys.append(self._keys.get_nowait())
                except queue.Empty:
                    break
            for start in range(0, len(keys), 500):
                batch = keys[start:start + 500]
                try:
                    self.redis.delete(*batch)
                except Exception as error:  # Redis away: the keys expire by themselves
                    log.warning("could not delete reply streams", extra={"count": len(batch), "error": str(error)})


class Dispatcher:
    def __init__(self, config: GatewayConfig, redis: Redis, blocking_redis: Redis, limiter: RateLimiter):
        self.config = config
        self.limiter = limiter
        self.redis = redis
        self.blocking_redis = blocking_redis
        self.queues = {
            model.name: Queue(queue_name(model.name), connection=redis, serializer=JobSerializer)
            for model in config.models
        }
        self.liveness = WorkerLiveness(redis)
        self.janitor = Janitor(redis)

    def queue_depth(self, model_name: str) -> int:
        return self.redis.llen(self.queues[model_name].key)

    def check_workers(self, model: ModelConfig) -> None:
        if self.liveness.count(model.name) == 0:
            raise NoWorkers(f"No worker is serving model '{model.name}' right now; try again later.",
                            retry_after=5)

    def enqueue(self, model: ModelConfig, *, endpoint: str, body: dict, requested_model: str,
                request_id: str, caller: dict, reservation: Reservation, stream: bool = False,
                route: str | None = None) -> JobRequest:
        """Put the job on its model's queue, admitted by the rate limits and the queue's limit in
        the same atomic step (one round trip): raises ``shared.ratelimit.RateLimited`` or
        ``QueueFull``, and then nothing is queued and no allowance is taken."""
        job_id = uuid.uuid4().hex
        request = JobRequest(job_id=job_id, request_id=request_id, model=model.name,
                             requested_model=requested_model, endpoint=endpoint, body=body,
                             deadline=time.time() + model.timeout, caller=caller,
                             reservation=reservation.to_dict(), stream=stream,
                             stream_seconds=model.max_stream_duration if stream else 0.0, route=route)
        jobs = self.config.jobs
        queue = self.queues[model.name]
        job = queue.create_job(
            JOB_FUNCTION,
            args=(request.to_dict(),),
            job_id=job_id,
            timeout=request.rq_job_timeout(),
            ttl=request.rq_queue_ttl(),
            result_ttl=int(jobs.result_ttl),
            failure_ttl=int(jobs.failure_ttl),
            on_failure=Callback(JOB_FAILURE_CALLBACK),
            # RQ's default description is the call with its arguments: the whole prompt.
            description=f"{endpoint} model={model.name} request_id={request_id}",
        )
        queue._prepare_for_queue(job)  # what RQ's enqueue sets before saving: origin, enqueued_at, status
        try:
            # RQ's enqueue (save, expiry, push) happens inside the admission script: one round
            # trip, and a refused job is never written, so no worker can see it.
            self.limiter.admit_and_enqueue(reservation, queue_key=queue.key, job_key=job.key,
                                           queues_key=queue.redis_queues_keys, job_id=job_id,
                                           max_depth=model.max_queue_depth, ttl=job.ttl, job_fields=job.to_dict())
        except QueueAtLimit as full:
            raise QueueFull(f"Model '{model.name}' has {full.depth} requests waiting, its limit; "
                            "try again shortly.", retry_after=1) from None
        return request

    def wait(self, model: ModelConfig, request: JobRequest, *,
             client_gone: Callable[[], bool] | None = None) -> Reply:
        """The job's answer; for a stream, its first entry (``Reply.kind`` is then ``chunk``:
        read the rest with ``ReplyChannel.read``)."""
        job_id = request.job_id
        channel = self.channel(job_id)
        committed = False
        try:
            reply = channel.wait(request.deadline, gone=client_gone, first=request.stream)
            committed = reply is not None and reply.kind == CHUNK
        except ClientGone:
            self.cancel(job_id)  # nobody will read the answer: have the worker drop the call now
            raise RequestCancelled() from None
        finally:
            if not committed:
                self.janitor.discard(channel.key)
        if reply is None:
            self.cancel(job_id)  # nobody waits any more; the worker may still be calling upstream
            raise DeadlineExceeded(f"Model '{model.name}' did not answer within its timeout of "
                                   f"{format_duration(model.timeout)}.")
        reply.meta["job_id"] = job_id
        reply.meta["enqueued_at"] = request.enqueued_at
        started_at = reply.meta.pop("started_at", None)
        if started_at:
            reply.meta["queue_wait_ms"] = round((started_at - request.enqueued_at) * 1000, 2)
        return reply

    def channel(self, job_id: str) -> ReplyChannel:
        return ReplyChannel(self.blocking_redis, job_id)

    def cancel(self, job_id: str) -> None:
        """Tell the worker nobody waits for this job's answer any more. Best effort: with Redis
        away the worker still stops at the job's deadline, and the client's answer (a 504, a
        499) must not turn into a 503 for it."""
        try:
            self.redis.set(cancel_key(job_id), 1, ex=max(1, int(self.config.jobs.result_ttl)))
        except RedisError as error:
            log.warning("could not mark a job cancelled", extra={"job_id": job_id, "error": str(error)})
