"""The RQ worker class the gateway runs: many jobs at once in one process.

An LLM call is seconds of waiting on a socket, and RQ runs one job per worker
process, each costing tens of megabytes (docs/benchmarks.md). ``ThreadedWorker`` is an RQ worker (registered as
RQ registers one, shown by ``rq info`` and rq-dashboard, honouring ``rq
suspend``) that runs up to ``concurrency`` jobs at once in threads:

- the main thread dequeues only when a slot is free, so a job never waits
  inside a busy worker while another worker idles, and it runs RQ's registry
  maintenance; it hands each job to a thread (the one that went idle
  last), and waits, briefly, until the job's provider request is out before
  it dequeues again;
- a gateway job's RQ records are written by ``shared.rq_records``, which says
  which and when: its start by the monitor once it has run a quarter of a
  second, its end by its own thread. Any other job put on the queue runs as RQ
  runs it, with RQ's own records;
- a monitor thread, which no job can block, sends heartbeats for the worker and
  every running job, shows the worker busy or idle, cancels jobs whose client
  has gone or whose deadline has passed (``workers.cancel``), and enforces hard
  timeouts (``workers.timeouts``);
- SIGTERM stops dequeuing and lets running jobs finish (queued jobs stay
  queued); a second signal fails the running jobs and exits at once;
- each job it dequeues is moved to the worker's own claim list
  (``workers.salvage``), not RQ's intermediate list shared by every worker of
  the queue, so whoever salvages a dead worker knows the jobs it had taken and
  not yet recorded as started;
- Redis going away does not end it: the loop backs off and tries again, and
  jobs whose dequeue reply was lost on the way are queued again.

It leans on RQ internals: RQ is pinned, and the lifecycle tests keep an upgrade honest.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers, format_exc_info
from rq.queue import Queue
from rq.timeouts import JobTimeoutException
from rq.utils import now
from rq.worker import WorkerStatus

from shared import rq_records
from shared.keys import JOB_FUNCTION, cancel_key, claimed_jobs_key, claimers_key
from shared.logs import current_request_id
from shared.plumbing.threadpool import LifoThreadPool
from shared.serializers import JobSerializer
from shared.settings import test_knobs
from workers.cancel import CLIENT_GONE, DEADLINE, SHUTDOWN, CancelScope, enter_scope, leave_scope
from workers.job_end import JobEnd, enter_job_end, leave_job_end
from workers.salvage import salvage_orphans, salvage_worker
from workers.timeouts import ThreadDeathPenalty, expire_overdue

log = logging.getLogger("aigw.worker")

# Liveness: 10 s and 15 s but in tests (shared.settings.TestKnobs).
HEARTBEAT_INTERVAL = test_knobs().heartbeat_interval
HEARTBEAT_TTL = int(max(3, HEARTBEAT_INTERVAL * 3.5))  # a killed worker's started jobs expire after this
WORKER_TTL = HEARTBEAT_TTL  # ...and the worker stops counting as live
MAINTENANCE_INTERVAL = test_knobs().maintenance_interval
MONITOR_TICK = 0.25  # how quickly a cancellation reaches the upstream socket
START_RECORD_AFTER = MONITOR_TICK  # a job shows as started once it has run this long (see shared.rq_records)
SUSPENSION_CHECK_INTERVAL = 1.0  # seconds: how soon `rq suspend` holds new jobs back
DEQUEUE_TIMEOUT = 1  # seconds; the main loop looks at its stop flags this often
DEADLINE_GRACE = 0.5  # the upstream read timeout fires at the deadline; this is its backstop
STUCK_GRACE = 10.0  # past the hard timeout, a thread that still runs gives up its slot
IDLE_THREAD_SECONDS = 60.0  # an idle job thread waits this long for the next job, then ends
HANDOVER_WAIT = 0.01  # the dequeuing thread waits at most this long for a job to reach its provider
REDIS_RETRY_FIRST, REDIS_RETRY_MAX = 0.25, 2.0  # seconds between tries while Redis is unreachable
_BURST_DONE = object()


class JobAbandoned(Exception):
    """A job failed because its worker stopped (or gave up on it), not because of the job."""


def request_id_of(job: Job) -> str | None:
    """The gateway request a job serves (from its payload), for logs; None for other jobs."""
    try:
        payload = job.args[0] if job.args else None
    except Exception:  # a job whose data cannot be read: no id, but never a failure
        return None
    return payload.get("request_id") if isinstance(payload, dict) else None


@dataclass
class Running:
    job: Job
    queue: Queue
    scope: CancelScope
    thread: threading.Thread | None = None
    execution_id: str | None = None  # its start is recorded (shared.rq_records.record_start)
    rq_execution: Execution | None = None  # not a gateway job: the execution RQ recorded for it
    started: float = field(default_factory=time.monotonic)
    starting: threading.Lock = field(default_factory=threading.Lock)  # its start, its end and a failure from outside
    sent: threading.Event = field(default_factory=threading.Event)  # its provider request is out (or it ended)
    ended: bool = False  # its own thread is recording its outcome: no start is written after that
    abandoned: bool = False  # failed from outside its thread: nothing of it is written after that
    end: JobEnd | None = None  # a gateway job's last writes (workers.job_end), sent with its records


class ThreadedWorker(SimpleWorker):
    death_penalty_class = ThreadDeathPenalty
    claim_list_key: str | None = None  # where the worker's dequeue moves jobs (RQ's: the intermediate list)

    def __init__(self, queues, *, concurrency: int = 16, reply_ttl: float = 60.0, **kwargs):
        """``reply_ttl``: how long an answer written for a dead worker's job stays (``jobs.result_ttl``)."""
        kwargs.setdefault("serializer", JobSerializer)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        kwargs.setdefault("job_monitoring_interval", int(HEARTBEAT_INTERVAL))
        super().__init__(queues, **kwargs)
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self._running: dict[str, Running] = {}
        self._lock = threading.Lock()
        self._cold = False
        self._stopped = threading.Event()
        # Unbounded: the slots bound the jobs, and a thread stuck past its job's timeout gives
        # its slot up while it still runs.
        self._job_threads = LifoThreadPool(name="job", idle_seconds=IDLE_THREAD_SECONDS)
        self.reply_ttl = reply_ttl
        # The claim list's bookkeeping (see _reconcile_claims), under its own lock.
        self._claims_lock = threading.Lock()
        self._ended_unrecorded: set[str] = set()  # ended before their start was written
        self._suspects: set[str] = set()  # listed, yet neither received nor ended, at the last look
        self._in_hand: set[str] = set()  # dequeued, not yet running: received all the same
        self._state_lock = threading.Lock()  # the monitor's busy/idle against `rq suspend`'s state
        self._took_jobs = False  # a job started since the monitor last looked
        self._suspension_checked = 0.0  # monotonic time of the last look at `rq suspend`
        self._redis_down_since: float | None = None
        self._redis_failures = 0
        self._monitor_quiet = False

    # -- RQ's worker, as the gateway runs it ---------------------------------------
    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # The monitor heartbeats every running job, so entries can expire soon after a crash.
        return HEARTBEAT_TTL

    def heartbeat(self, timeout=None, pipeline=None):
        return super().heartbeat(timeout or WORKER_TTL, pipeline=pipeline)

    def set_state(self, state: str, pipeline=None):
        with self._state_lock:
            super().set_state(state, pipeline=pipeline)

    def check_for_suspension(self, burst: bool):
        # RQ looks (and heartbeats) on every dequeue: a round trip per job. Once a second
        # is enough for `rq suspend`; the monitor thread does the heartbeats.
        if time.monotonic() - self._suspension_checked < SUSPENSION_CHECK_INTERVAL:
            return
        self._suspension_checked = time.monotonic()
        if rq_records.is_suspended(self.connection):
            super().check_for_suspension(burst)  # RQ's: shows the worker suspended until `rq resume`

    def handle_exception(self, job: Job, *exc_info):
        """RQ logs a failed job with its arguments, which here are the user's prompt:
        log what failed, never what was asked (the job record has the rest)."""
        exc_type, exc_value = exc_info[0], exc_info[1]
        log.warning("job failed", extra={"job_id": job.id, "queue": job.origin, "worker": self.name,
                                         "error": f"{exc_type.__name__ if exc_type else 'Error'}: {exc_value}"[:500]})
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    # -- a job's records -------------------------------------------------------------
    def perform_job(self, job: Job, queue: Queue, execution: Execution | None = None) -> bool:
        running = self._running.get(job.id)
        if running is None or job.func_name != JOB_FUNCTION:
            return self._perform_as_rq_does(job, queue, running)
        running.end = JobEnd(self.connection)
        token = enter_job_end(running.end)
        try:
            with self.death_penalty_class(job.timeout or self.queue_class.DEFAULT_TIMEOUT, JobTimeoutException,
                                          job_id=job.id):
                job.perform()  # the job function, with RQ's get_current_job() on it
        except:  # noqa: E722 - as RQ's own perform_job: a timeout may land anywhere
            exc_info = sys.exc_info()
        else:
            exc_info = None
        finally:
            leave_job_end(token)
        self._record_outcome(running, exc_info)
        return exc_info is None

    def _perform_as_rq_does(self, job: Job, queue: Queue, running: Running | None) -> bool:
        """Not a gateway job: RQ's own records, start to end."""
        execution = self.prepare_execution(job)
        if running is not None:
            with running.starting:
                running.rq_execution, running.execution_id = execution, execution.id
        if self.claim_list_key is not None:
            self.connection.lrem(self.claim_list_key, 1, job.id)
        return super().perform_job(job, queue, execution)

    def _record_outcome(self, running: Running, exc_info) -> None:
        """A gateway job's end, from its own thread: its answer and settlement (``running.end``)
        with its records (``shared.rq_records``) in one round trip if it succeeded; if it
        failed, its own answer first, then its failure callback and log line (as RQ's), then
        its records."""
        job, end = running.job, running.end
        if exc_info is not None:
            self._send_end(end, job)
            try:
                if job.failure_callback is not None:
                    job.failure_callback(job, self.connection, *exc_info)
            except Exception:  # as RQ: a failing callback becomes the failure recorded
                exc_info = sys.exc_info()
            self.handle_exception(job, *exc_info)
        with running.starting:  # a start being written lands first; none is written after
            if running.abandoned:
                return  # failed from outside meanwhile, and recorded so (and answered)
            running.ended = True
            execution_id = running.execution_id
        try:
            # A job recorded as started leaves its records in one transaction; a short one
            # has only its claim-list entry and its hash to remove.
            with self.connection.pipeline(transaction=execution_id is not None or exc_info is not None) as pipe:
                answered = end.queue(pipe) if end is not None else None  # the answer first
                records_from = len(pipe)
                if exc_info is None:
                    rq_records.record_success(pipe, job.id, queue=job.origin, worker_name=self.name,
                                              execution_id=execution_id, claim_key=self.claim_list_key)
                else:
                    rq_records.record_failure(pipe, job, format_exc_info(exc_info), worker_name=self.name,
                                              execution_id=execution_id, claim_key=self.claim_list_key)
                results = pipe.execute(raise_on_error=False)
            if answered is not None:
                self._check_answer(answered, results, job)
            for result in results[records_from:]:
                if isinstance(result, Exception):
                    raise result
        except RedisError as error:  # its claim-list entry goes with the list's next look
            log.warning("could not record a job's end", extra={"job_id": job.id, "error": str(error)})
            if execution_id is None:
                self._ended_unrecorded_add(job.id)
        self._after_answer(end, job)

    @staticmethod
    def _check_answer(answered, results: list, job: Job) -> None:
        try:
            answered(results)
        except RedisError as error:
            _answer_lost(job, error)

    @staticmethod
    def _send_end(end: JobEnd | None, job: Job) -> None:
        """A failed job's own answer (and settlement), ahead of what its failure writes."""
        if end is None:
            return
        try:
            end.send()
        except RedisError as error:
            _answer_lost(job, error)

    @staticmethod
    def _after_answer(end: JobEnd | None, job: Job) -> None:
        """The job's log line and token metrics: never a reason to fail the job's bookkeeping."""
        if end is None:
            return
        try:
            end.finish()
        except Exception:
            log.exception("a job's log line or metrics failed", extra={"job_id": job.id})

    def _write_starts(self, jobs: list[Running]) -> None:
        """Record these running jobs as started (one transaction), unless they ended meanwhile."""
        locks = [each.starting for each in jobs]
        for lock in locks:
            lock.acquire()
        try:
            due = [each for each in jobs if each.execution_id is None and not each.ended and not each.abandoned]
            if not due:
                return
            ids = {each.job.id: rq_records.new_execution_id() for each in due}
            with self.connection.pipeline() as pipe:
                for each in due:
                    rq_records.record_start(pipe, each.job, ids[each.job.id], worker_name=self.name,
                                            claim_key=self.claim_list_key, heartbeat_ttl=HEARTBEAT_TTL)
                pipe.execute()
            for each in due:
                each.execution_id = ids[each.job.id]
        finally:
            for lock in locks:
                lock.release()

    def _shutdown(self):
        # RQ raises StopRequested from the signal handler, which could land between
        # dequeuing a job and starting it. A flag is enough: the loop wakes every second.
        self._stop_requested = True
        self.set_shutdown_requested_date()

    def request_force_stop(self, signum, frame):
        if self._shutdown_requested_date and (now() - self._shutdown_requested_date).total_seconds() < 1:
            return  # the same Ctrl-C, delivered to the process group and forwarded by the supervisor
        log.warning("cold shutdown: failing the running jobs", extra={"worker": self.name})
        self._cold = True
        self._stop_requested = True

    # -- main loop -------------------------------------------------------------
    def work(self, burst: bool = False, logging_level=None, max_jobs=None, **_ignored) -> bool:
        if len(self.queues) == 1 and self.get_redis_server_version() >= (6, 2, 0):  # BLMOVE
            self.claim_list_key = claimed_jobs_key(self.name)
        self.bootstrap(logging_level)
        self._install_signal_handlers()
        monitor = threading.Thread(target=self._monitor, name="rq-monitor", daemon=True)
        monitor.start()
        started = 0
        try:
            while not self._stop_requested and (max_jobs is None or started < max_jobs):
                try:
                    step = self._step(burst)
                except RedisError as error:
                    self._redis_unavailable(error)
                    continue
                self._redis_available()
                if step is _BURST_DONE:
                    break
                started += bool(step)
            self._drain()
        finally:
            self._stopped.set()
            monitor.join(timeout=5)
            self.teardown()
        return bool(started)

    def _step(self, burst: bool):
        """Dequeue and start one job if a slot is free: True if one started."""
        self.check_for_suspension(burst)
        if self.should_run_maintenance_tasks:
            self.run_maintenance_tasks()
        if not self._slots.acquire(timeout=DEQUEUE_TIMEOUT):
            return False
        try:
            result = self._dequeue()
        except BaseException:
            self._slots.release()
            raise
        if result is None:
            self._slots.release()
            return _BURST_DONE if burst and not self._running else False
        self._start(*result)
        return True

    def _redis_unavailable(self, error: RedisError) -> None:
        """The loop waits and tries again: a Redis restart must not end the worker."""
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("Redis is unreachable; the worker keeps trying",
                        extra={"worker": self.name, "error": f"{type(error).__name__}: {error}"[:300]})
        delay = min(REDIS_RETRY_MAX, REDIS_RETRY_FIRST * 2 ** self._redis_failures)
        self._redis_failures += 1
        end = time.monotonic() + delay
        while not self._stop_requested and time.monotonic() < end:
            time.sleep(0.05)

    def _redis_available(self) -> None:
        if self._redis_down_since is not None:
            log.warning("Redis is reachable again", extra={
                "worker": self.name, "down_s": round(time.monotonic() - self._redis_down_since, 2)})
            self._redis_down_since, self._redis_failures = None, 0

    def _dequeue(self) -> tuple[Job, Queue] | None:
        if self.claim_list_key is None:
            try:
                result = self.queue_class.dequeue_any(
                    self._ordered_queues, DEQUEUE_TIMEOUT, connection=self.connection, job_class=self.job_class,
                    serializer=self.serializer, death_penalty_class=self.death_penalty_class)
            except DequeueTimeout:
                return None
            if result is not None:
                result[0].redis_server_version = self.get_redis_server_version()
            return result
        queue = self.queues[0]
        job_id = rq_records.claim_next(self.connection, queue.name, self.claim_list_key, DEQUEUE_TIMEOUT)
        if job_id is None:
            return None
        with self._claims_lock:
            self._in_hand.add(job_id)  # until _start registers it as running
        try:
            job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        except NoSuchJobError:  # it expired while queued
            self.connection.lrem(self.claim_list_key, 1, job_id)
            self._out_of_hand(job_id)
            return None
        except BaseException:  # never received whole: the claim list's reconciliation queues it again
            self._out_of_hand(job_id)
            raise
        job.redis_server_version = self.get_redis_server_version()
        return job, queue

    def _out_of_hand(self, job_id: str) -> None:
        with self._claims_lock:
            self._in_hand.discard(job_id)

    def _start(self, job: Job, queue: Queue) -> None:
        running = Running(job, queue, CancelScope(job.id))
        with self._lock:
            # Registered before its thread starts: the monitor sees it running from here on.
            self._running[job.id] = running
            self._took_jobs = True
        if self.claim_list_key is not None:
            self._out_of_hand(job.id)
        self._hand_over(running)

    def _hand_over(self, running: Running) -> None:
        """To a job thread: the one that went idle last, whose memory is likeliest still in the
        CPU's caches (starting a thread costs time on every request). Then wait, briefly,
        until the job's provider request is out: the next dequeue's work would otherwise
        take the GIL at the job's first pause (urllib3 polls its connection before sending)
        and hold it while the job waits to be sent (docs/benchmarks.md)."""
        self._job_threads.submit(self._job_thread, running)
        running.sent.wait(HANDOVER_WAIT)

    def _job_thread(self, running: Running) -> None:
        running.thread = threading.current_thread()
        self._run(running)

    def _run(self, running: Running) -> None:
        running.scope.on_request_sent = running.sent.set
        token = enter_scope(running.scope)
        log_token = current_request_id.set(request_id_of(running.job))  # RQ's own records of the job too
        try:
            self.perform_job(running.job, running.queue, running.rq_execution)
        except Exception:
            log.exception("job bookkeeping failed", extra={"job_id": running.job.id, "worker": self.name})
            if running.execution_id is None:
                self._ended_unrecorded_add(running.job.id)
        finally:
            running.sent.set()  # a job that ended without calling its provider
            running.scope.close()
            leave_scope(token)
            current_request_id.reset(log_token)
            self._finish(running)

    def _finish(self, running: Running) -> None:
        with self._lock:
            if self._running.pop(running.job.id, None) is None:
                return  # already released: its thread outlived its hard timeout
        self._slots.release()

    def _ended_unrecorded_add(self, job_id: str) -> None:
        """A job that ended with its records not written is still in the claim list; it ran,
        so it is removed from there, never queued again."""
        if self.claim_list_key is not None:
            with self._claims_lock:
                self._ended_unrecorded.add(job_id)

    def _drain(self) -> None:
        """Warm shutdown: let running jobs end (each is bounded by its own timeout)."""
        if self._running:
            log.info("waiting for running jobs to finish",
                     extra={"worker": self.name, "jobs": len(self._running)})
        while self._running and not self._cold:
            time.sleep(0.1)
        if self._cold:
            self._fail_running("The worker was stopped (cold shutdown) while running this job.")

    def _fail_running(self, reason: str) -> None:
        with self._lock:
            victims = list(self._running.values())
            self._running.clear()
        for running in victims:
            self._fail(running, reason)

    def _fail(self, running: Running, reason: str) -> None:
        """Mark a job failed from outside its thread, and let its client know."""
        job = running.job
        if running.ended:
            return  # its own thread is recording its outcome
        error = JobAbandoned(reason)
        try:
            # The client hears this first: the job's own answer to being cancelled (below)
            # comes second and is not read, so the client always gets the same error.
            if job.failure_callback is not None:
                job.failure_callback(job, self.connection, JobAbandoned, error, None)
        except Exception:
            log.exception("could not answer an abandoned job's client", extra={"job_id": job.id})
        running.scope.cancel(SHUTDOWN)
        with running.starting:  # a start being written lands first; none is written after
            if running.ended:
                return
            running.abandoned = True
            execution_id = running.execution_id
        try:
            if running.rq_execution is not None:
                self.handle_job_failure(job, running.queue, exc_string=reason, execution=running.rq_execution)
            else:
                with self.connection.pipeline() as pipe:
                    rq_records.record_failure(pipe, job, reason, worker_name=self.name, execution_id=execution_id,
                                              claim_key=self.claim_list_key)
                    pipe.execute()
        except Exception:
            log.exception("could not mark a job failed", extra={"job_id": job.id})
            if execution_id is None:
                self._ended_unrecorded_add(job.id)

    # -- monitor thread --------------------------------------------------------
    def _monitor(self) -> None:
        next_heartbeat = 0.0
        while not self._stopped.wait(MONITOR_TICK):
            try:
                expire_overdue()
                self._release_stuck()
                # Jobs that have run at least a tick: most gateway jobs end sooner, and then
                # cost neither start records nor looks at their cancel mark.
                settled = [each for each in self._snapshot() if time.monotonic() - each.started >= START_RECORD_AFTER]
                self._write_starts([each for each in settled if each.execution_id is None])
                self._cancel_abandoned(settled)
                self._show_state()
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat_all()
                    next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
            except RedisError as error:  # a Redis outage must not end liveness for good; said once
                if not self._monitor_quiet:
                    log.warning("worker monitor cannot reach Redis; it keeps trying",
                                extra={"worker": self.name, "error": str(error)[:300]})
                    self._monitor_quiet = True
            except Exception:
                log.exception("worker monitor tick failed", extra={"worker": self.name})
            else:
                self._monitor_quiet = False

    def _snapshot(self) -> list[Running]:
        with self._lock:
            return list(self._running.values())

    def _show_state(self) -> None:
        """Busy while any job runs (or ran since the last look), idle otherwise; written only
        when it changes, and never over `rq suspend`'s state."""
        with self._lock:
            busy, self._took_jobs = bool(self._running) or self._took_jobs, False
        state = WorkerStatus.BUSY if busy else WorkerStatus.IDLE
        with self._state_lock:
            if self._state != state and self._state != WorkerStatus.SUSPENDED:
                super().set_state(state)

    def _release_stuck(self) -> None:
        """A thread that outlives its hard timeout (stuck in C code, say) cannot be
        killed; its slot is released anyway so the worker's capacity stays true."""
        for each in self._snapshot():
            limit = (each.job.timeout or 0) + STUCK_GRACE
            if each.job.timeout and time.monotonic() - each.started > limit:
                log.error("job thread stuck past its hard timeout; releasing its slot",
                          extra={"job_id": each.job.id, "request_id": request_id_of(each.job), "worker": self.name})
                self._fail(each, "The job did not stop after its timeout.")
                self._finish(each)

    def _cancel_abandoned(self, settled: list[Running]) -> None:
        running = [r for r in settled if not r.scope.cancelled]
        if not running:
            return
        wall = time.time()
        for each in running:
            if each.scope.deadline is not None and wall > each.scope.deadline + DEADLINE_GRACE:
                each.scope.cancel(DEADLINE)
        with self.connection.pipeline(transaction=False) as pipe:
            for each in running:
                pipe.exists(cancel_key(each.job.id))
            flags = pipe.execute()
        for each, flagged in zip(running, flags, strict=True):
            if flagged and each.scope.cancel(CLIENT_GONE):
                log.info("job cancelled: its client has gone",
                         extra={"job_id": each.job.id, "request_id": request_id_of(each.job)})

    def _heartbeat_all(self) -> None:
        started = [(r.job.id, r.execution_id) for r in self._snapshot() if r.execution_id is not None]
        with self.connection.pipeline(transaction=False) as pipe:
            rq_records.heartbeat(pipe, self, started, worker_ttl=WORKER_TTL, heartbeat_ttl=HEARTBEAT_TTL)
            if self.claim_list_key is not None:
                pipe.sadd(claimers_key(self.queues[0].name), self.name)
                pipe.lrange(self.claim_list_key, 0, -1)  # last: its answer is the last one
            answers = pipe.execute()
        if self.claim_list_key is not None:
            self._reconcile_claims(answers[-1])

    # -- the claim list --------------------------------------------------------
    def _reconcile_claims(self, listed: list[bytes], *, final: bool = False) -> None:
        """Keep the claim list true. A job listed that this process neither runs nor ran
        was moved there by a dequeue whose reply never arrived (a connection cut by a Redis
        restart; redis-py may even have sent the dequeue again): after two looks in a row
        (a job just dequeued is running within milliseconds), or at once when the worker
        stops (``final``), it goes back to the front of its queue, never having run. A job
        that ended with its start never written (Redis away at that moment) ran: it is
        only removed."""
        ids = {item.decode() if isinstance(item, bytes) else item for item in listed}
        with self._lock:
            running = set(self._running)
        with self._claims_lock:
            ended = ids & self._ended_unrecorded
            unknown = ids - running - ended - self._in_hand
            lost = unknown if final else unknown & self._suspects
            self._suspects = unknown - lost
        if not ended and not lost:
            return
        with self.connection.pipeline() as pipe:
            for job_id in ended | lost:
                pipe.lrem(self.claim_list_key, 0, job_id)
            for job_id in lost:
                rq_records.put_back(pipe, self.queues[0].name, job_id)
            pipe.execute()
        with self._claims_lock:
            self._ended_unrecorded -= ended
            self._ended_unrecorded &= ids
        if lost:
            log.warning("jobs dequeued but never received (their reply was lost) are queued again",
                        extra={"worker": self.name, "job_ids": sorted(lost)})

    # -- registration ------------------------------------------------------------
    def register_birth(self):
        if self.claim_list_key is not None:
            self._salvage_previous_incarnation()
        super().register_birth()
        with self.connection.pipeline(transaction=False) as pipe:
            for queue in self.queue_names():
                rq_records.register_queue(pipe, queue)
            if self.claim_list_key is not None:
                pipe.sadd(claimers_key(self.queues[0].name), self.name)
            pipe.execute()

    def _salvage_previous_incarnation(self) -> None:
        """A process of this name (host and pid) that left records behind died without a
        word, and none of its jobs can still be running: salvage them before taking the name."""
        if rq_records.left_records(self.connection, self.name, self.claim_list_key):
            salvage_worker(self.connection, self.name, self.queues[0].name, reply_ttl=self.reply_ttl)

    def register_death(self):
        super().register_death()
        if self.claim_list_key is not None:
            self._reconcile_claims(self.connection.lrange(self.claim_list_key, 0, -1), final=True)
            with self.connection.pipeline() as pipe:
                pipe.srem(claimers_key(self.queues[0].name), self.name)
                pipe.delete(self.claim_list_key)
                pipe.execute()

    def clean_registries(self):
        super().clean_registries()
        if self.claim_list_key is None:
            return
        try:
            salvage_orphans(self.connection, self.queues[0].name, reply_ttl=self.reply_ttl)
        except RedisError:
            raise
        except Exception:  # the backstop must never end the worker
            log.exception("could not salvage a dead worker's jobs", extra={"worker": self.name})


def _answer_lost(job: Job, error: RedisError) -> None:
    """Its client waits until its deadline: nothing more can be done here."""
    log.error("could not write a job's answer", extra={"job_id": job.id, "error": str(error)[:300]})
