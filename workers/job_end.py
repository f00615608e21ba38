"""A gateway job's last writes, sent in one round trip with its worker's records.

A job ends with its answer (the reply stream's final entry, which wakes the API
process waiting for it), the settlement of its rate-limit reservation and, once
the job function has returned, the removal of its RQ records
(``shared.rq_records``). One after the other they took three round trips. The job
function hands the first two to its ``JobEnd``; the worker puts them on the
pipeline that records the job's success, ahead of the records, and sends it once.
Redis runs a pipeline's commands in order, so the answer is written before
anything else; the API process is woken once the pipeline has run.

What the job function does once it has answered (its log line, its token
metrics) it hands over as well (``after``): it runs once the answer is out, so it
never holds the answer back.

A job that fails sends its end on its own, before the failure is handled
(``send``): its client hears the job's own answer first, as it always did. A job
run where nobody collects its end (an RQ worker other than the gateway's, a test
calling the job function) gets an ``ImmediateEnd``: each write goes at once.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger("aigw.worker")

# ``write(pipe)`` puts the answer's commands on ``pipe``.
AnswerWrite = Callable[[Pipeline], None]
# ``write(pipe)`` puts the settlement's commands on ``pipe``; ``write(None)`` makes it at once.
SettlementWrite = Callable[[Pipeline | None], None]


class JobEnd:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._answer: AnswerWrite | None = None
        self._settlement: SettlementWrite | None = None
        self._after: list[Callable[[], None]] = []

    def answer(self, write: AnswerWrite) -> None:
        self._answer = write

    def settle(self, write: SettlementWrite) -> None:
        self._settlement = write

    def after(self, hook: Callable[[], None]) -> None:
        self._after.append(hook)

    def queue(self, pipe: Pipeline) -> Callable[[list], None]:
        """Put the answer, then the settlement, on ``pipe``. Returns what to call with the
        pipeline's results (``execute(raise_on_error=False)``): it raises the answer's error,
        if its write failed; a settlement that failed is logged, or made again on its own if
        Redis had lost its script."""
        answer, settlement = self._answer, self._settlement
        self._answer = self._settlement = None
        if answer is not None:
            answer(pipe)
        settlement_from = len(pipe)
        if settlement is not None:
            settlement(pipe)
        settlement_to = len(pipe)

        def check(results: list) -> None:
            for result in results[:settlement_from]:
                if isinstance(result, Exception):
                    raise result
            errors = [each for each in results[settlement_from:settlement_to] if isinstance(each, Exception)]
            if errors:
                self._settlement_failed(settlement, errors[0])
        return check

    def send(self) -> None:
        """The answer and the settlement in a round trip of their own (nothing if there are none)."""
        if self._answer is None and self._settlement is None:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            check = self.queue(pipe)
            results = pipe.execute(raise_on_error=False)
        check(results)

    def finish(self) -> None:
        """Run what waited for the answer to be out."""
        hooks, self._after = self._after, []
        for hook in hooks:
            hook()

    @staticmethod
    def _settlement_failed(settlement: SettlementWrite, error: Exception) -> None:
        if isinstance(error, NoScriptError):  # Redis restarted since the script was loaded
            _settle_now(settlement)
            return
        _settlement_lost(error)


class ImmediateEnd(JobEnd):
    """Each write as it is handed over: for a job run outside the gateway's worker."""

    def answer(self, write: AnswerWrite) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            write(pipe)
            pipe.execute()

    def settle(self, write: SettlementWrite) -> None:
        _settle_now(write)

    def after(self, hook: Callable[[], None]) -> None:
        hook()


def _settle_now(write: SettlementWrite) -> None:
    """The answer is out: a failed settlement must not fail the job. The estimate stays
    taken (the stricter figure) and expires with its window."""
    try:
        write(None)
    except RedisError as error:
        _settlement_lost(error)


def _settlement_lost(error: Exception) -> None:
    log.warning("could not settle a request's rate limits; its estimate stays counted",
                extra={"error": str(error)[:300]})


_current: contextvars.ContextVar[JobEnd | None] = contextvars.ContextVar("aigw_job_end", default=None)


def current_job_end(redis: Redis) -> JobEnd:
    """The running job's end, as its worker collects it; an ``ImmediateEnd`` on ``redis`` otherwise."""
    end = _current.get()
    return end if end is not None else ImmediateEnd(redis)


def enter_job_end(end: JobEnd) -> contextvars.Token:
    return _current.set(end)


def leave_job_end(token: contextvars.Token) -> None:
    _current.reset(token)
