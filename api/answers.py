"""Waiting for a queued job's answer.

The data goes one way: admission (``api.admission``) queued an RQ job; the API
blocks on the job's reply stream until the worker answers or the model's
deadline passes. A job nobody waits for any more is marked cancelled, so its
worker drops the provider call. Read reply streams are deleted off the
request's path, by a ``Janitor`` that starts and stops with the app.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

from shared.config import GatewayConfig, ModelConfig
from shared.durations import format_duration
from shared.errors import DeadlineExceeded, RequestCancelled
from shared.jobs import JobRequest
from shared.keys import cancel_key
from shared.replies import CHUNK, ClientGone, Reply, ReplyChannel

log = logging.getLogger("aigw.api")


class Janitor:
    """Deletes read reply streams off the request path, in batches a moment after they
    were read: a delete sent at once took the process's GIL at the answer's first pause
    (writing its headers) and held the rest of the answer back. A key this misses still
    expires on its own. Its thread runs from ``start()`` to ``stop()`` (the app's)."""

    BATCH_DELAY = 0.25  # seconds; a read reply stream outlives its answer by at most about this
    _STOP = object()

    def __init__(self, redis: Redis, batch_delay: float = BATCH_DELAY):
        self.redis = redis
        self.batch_delay = batch_delay
        self._keys: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="reply-janitor", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Delete what is pending, then end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._keys.put(self._STOP)
            thread.join(timeout)

    def discard(self, key: str) -> None:
        self._keys.put(key)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._keys.get()
            if first is self._STOP:
                return
            keys = [first]
            time.sleep(self.batch_delay)  # gathers the keys read meanwhile, off their answers' way
            while True:
                try:
                    key = self._keys.get_nowait()
                except queue.Empty:
                    break
                if key is self._STOP:
                    stopping = True
                else:
                    keys.append(key)
            self._delete(keys)

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            try:
                self.redis.delete(*batch)
            except Exception as error:  # Redis away: the keys expire by themselves
                log.warning("could not delete reply streams", extra={"count": len(batch), "error": str(error)})


class Answers:
    def __init__(self, config: GatewayConfig, redis: Redis, blocking_redis: Redis):
        self.config = config
        self.redis = redis
        self.blocking_redis = blocking_redis
        self.janitor = Janitor(redis)

    def start(self) -> None:
        self.janitor.start()

    def stop(self) -> None:
        self.janitor.stop()

    def wait(self, model: ModelConfig, job: JobRequest, *,
             client_gone: Callable[[], bool] | None = None) -> Reply:
        """The job's answer; for a stream, its first entry (``Reply.kind`` is then ``chunk``:
        read the rest with ``ReplyChannel.read``)."""
        channel = self.channel(job.job_id)
        committed = False
        try:
            reply = channel.wait(job.deadline, gone=client_gone, first=job.stream)
            committed = reply is not None and reply.kind == CHUNK
        except ClientGone:
            self.cancel(job.job_id)  # nobody will read the answer: have the worker drop the call now
            raise RequestCancelled() from None
        finally:
            if not committed:
                self.janitor.discard(channel.key)
        if reply is None:
            self.cancel(job.job_id)  # nobody waits any more; the worker may still be calling upstream
            raise DeadlineExceeded(f"Model '{model.name}' did not answer within its timeout of "
                                   f"{format_duration(model.timeout)}.")
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
