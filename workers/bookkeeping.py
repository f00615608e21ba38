"""How the gateway's worker records its jobs in RQ: RQ's records, in fewer round trips.

``ThreadedWorker`` (``workers.worker_classes``) keeps every record RQ keeps (the
execution, the started/finished/failed registries, results, ``rq info``), but RQ
writes them in many small round trips, several of them on a request's path. This
mixin writes the same records in fewer:

- a job's start (execution record, started registry, STARTED status) in one
  transaction, which the worker sends once the provider request is on the wire;
- a gateway job's success in one transaction: RQ first watches the job's
  dependents (two round trips) and writes the ended heartbeat on its own (a
  third), but nothing ever depends on a gateway job, and the success record
  carries the heartbeat anyway. Other jobs take RQ's own path;
- heartbeats in one round trip, and the suspension check once a second.

It leans on RQ internals: RQ is pinned, and the lifecycle tests keep an upgrade honest.
"""

from __future__ import annotations

import logging
import os
import time

from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.queue import Queue
from rq.utils import now
from rq.worker import WorkerStatus

from shared.keys import JOB_FUNCTION

log = logging.getLogger("aigw.worker")


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


# Liveness. Tests shorten these through the environment; operators have no need to.
HEARTBEAT_INTERVAL = env_float("WORKER_HEARTBEAT_INTERVAL", 10.0)
HEARTBEAT_TTL = int(max(3, HEARTBEAT_INTERVAL * 3.5))  # a killed worker's jobs expire after this
WORKER_TTL = HEARTBEAT_TTL  # ...and the worker stops counting as live


class LeanBookkeeping:
    """Mixin for an RQ worker class (before it in the bases)."""

    _suspension_checked = 0.0  # monotonic time of the last check
    claim_list_key: str | None = None  # where the worker's dequeue moves jobs (RQ's: the intermediate list)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # The monitor heartbeats every running job, so entries can expire soon after a crash.
        return HEARTBEAT_TTL

    def prepare_execution(self, job: Job) -> Execution:
        """RQ records the execution, then prepares the job, in two round trips; one does both."""
        with self.connection.pipeline() as pipeline:
            execution = self.queue_start(job, pipeline)
            pipeline.execute()
        return execution

    def queue_start(self, job: Job, pipeline) -> Execution:
        """Put a job's start records on ``pipeline`` (a transaction)."""
        ttl = self.get_heartbeat_ttl(job)
        execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
        # What RQ's prepare_job_execution() does:
        self.heartbeat(ttl, pipeline=pipeline)
        job.heartbeat(now(), ttl, pipeline=pipeline)
        job.prepare_for_execution(self.name, pipeline=pipeline)
        pipeline.persist(job.key)
        if self.claim_list_key is not None:  # from here on, RQ's execution records say whose it is
            pipeline.lrem(self.claim_list_key, 1, job.id)
        elif len(self.queues) == 1:
            pipeline.lrem(self.queues[0].intermediate_queue_key, 1, job.id)
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Written with the execution record instead (``queue_start``)."""

    def handle_exception(self, job: Job, *exc_info):
        """RQ logs a failed job with its arguments, which here are the user's prompt:
        log what failed, never what was asked (the job record has the rest)."""
        exc_type, exc_value = exc_info[0], exc_info[1]
        log.warning("job failed", extra={"job_id": job.id, "queue": job.origin, "worker": self.name,
                                         "error": f"{exc_type.__name__ if exc_type else 'Error'}: {exc_value}"[:500]})
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int):
        if job.func_name != JOB_FUNCTION:
            return super().handle_execution_ended(job, queue, heartbeat_ttl)
        # RQ writes this heartbeat in a round trip of its own; the outcome's record, written
        # next, carries it.
        job.ended_at = now()
        job.last_heartbeat = job.ended_at

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution: Execution):
        if job.func_name != JOB_FUNCTION:
            return super().handle_job_success(job, queue, started_job_registry, execution)
        # RQ's success transaction without its WATCH and read of the job's dependents.
        with self.connection.pipeline() as pipeline:
            self.increment_successful_job_count(pipeline=pipeline)
            self.increment_total_working_time(job.ended_at - job.started_at, pipeline)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                job._handle_success(result_ttl, pipeline=pipeline, worker_name=self.name, execution_id=execution.id,
                                    execution_started_at=execution.created_at, execution_ended_at=job.ended_at)
            job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            pipeline.execute()

    def heartbeat(self, timeout=None, pipeline=None):
        """One round trip for RQ's three heartbeat commands."""
        if pipeline is not None:
            return super().heartbeat(timeout or WORKER_TTL, pipeline=pipeline)
        with self.connection.pipeline(transaction=False) as own:
            super().heartbeat(timeout or WORKER_TTL, pipeline=own)
            own.execute()

    def check_for_suspension(self, burst: bool):
        # RQ checks (and heartbeats) on every dequeue: a round trip per job. Once a
        # second is enough for `rq suspend`; the monitor thread does the heartbeats.
        if time.monotonic() - self._suspension_checked >= 1.0:
            self._suspension_checked = time.monotonic()
            super().check_for_suspension(burst)
