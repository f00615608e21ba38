"""Every Redis key and queue name the gateway uses, named in one place.

RQ's keys (``rq:queue:<name>``, ``rq:job:<id>``, its registries and worker
records) are named here too, as RQ names them: the gateway writes RQ's records
itself (``shared.rq_records`` says which, when and why), and a test holds these
names to RQ's own. The gateway's keys all start with ``aigw:`` so an operator can
tell them apart.

No key is ever built from a caller's text as it came: every variable part goes
through ``key_part``, which leaves ``[A-Za-z0-9._/-]`` as it is and
percent-escapes everything else (``%`` and ``:`` included). A part therefore
never holds a ``:``, so each kind's fixed words stay where they are and no
input can end in another kind's key (``alice/scratch:lock`` becomes
``alice/scratch%3Alock``, a different project reference, not a lock). The
single-flight lock and its wake-up stream live in namespaces of their own
(``aigw:gitlab-lock:``, ``aigw:gitlab-done:``) that no cache key starts with.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote

from rq.defaults import RQ_KEY_PREFIX

KEY_PREFIX = "aigw"

# The job function RQ imports in the worker. The API names it by path so that
# it never imports the workers package.
JOB_FUNCTION = "workers.jobs.execute"
JOB_FAILURE_CALLBACK = "workers.jobs.on_failure"

_PLAIN = re.compile(r"[A-Za-z0-9._/-]*")
# Each kind of cached GitLab answer and how many parts name one: a member is a project and a user.
# token and job: the SHA-256 of a credential of that kind (a raw token is never a key nor a value).
GITLAB_CACHE_KINDS = {"token": 1, "job": 1, "project": 1, "group": 1, "member": 2, "user": 1}
CREDENTIAL_KINDS = ("token", "job")


def key_part(value: object) -> str:
    """``value`` as one colon-free part of a key, injectively: distinct values, distinct parts."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text  # the common case (ids, hex digests, paths) costs one match
    # '%' itself is escaped too, so escaped text never looks like another value's escape.
    return quote(text, safe="/._-", errors="surrogatepass")


def queue_name(model_name: str) -> str:
    """One RQ queue per configured model, named after the model (config names: ``[A-Za-z0-9._-]``)."""
    return model_name


def reply_stream_key(job_id: str) -> str:
    """Redis Stream a worker writes a job's outcome to, and the API reads from."""
    return f"{KEY_PREFIX}:reply:{key_part(job_id)}"


def cancel_key(job_id: str) -> str:
    """Set by the API when nobody waits for a job's answer any more."""
    return f"{KEY_PREFIX}:cancel:{key_part(job_id)}"


def response_key(response_id: str) -> str:
    """A Responses API response the gateway produced or relayed: its owner, its model and, for one
    the gateway keeps itself, the response and its conversation (``shared.responses_store``)."""
    return f"{KEY_PREFIX}:response:{key_part(response_id)}"


def claimed_jobs_key(worker_name: str) -> str:
    """The jobs one worker process has taken off its queue and not yet recorded as started.
    RQ's own intermediate list is shared by every worker of a queue; this one says whose."""
    return f"{KEY_PREFIX}:claimed:{key_part(worker_name)}"


def claimers_key(queue: str) -> str:
    """The worker processes of a queue that may hold claimed jobs: where a dead host's are found."""
    return f"{KEY_PREFIX}:claimers:{key_part(queue)}"


def deployment_health_key(model_name: str) -> str:
    """A model's deployments' health (``shared.breaker``): per deployment, cooling until when, failed why,
    its consecutive 403s. One hash per model, so a worker reads all of a model's in one command."""
    return f"{KEY_PREFIX}:deployments:{key_part(model_name)}"


def deployment_failures_key(model_name: str, deployment: str) -> str:
    """A deployment's retryable failures in the breaker's current window (expires with it): a hash, per
    caller (``workers.breaker.caller_of``) the failures a prompt may have caused, and under "*" the others.
    (Its name changed with its type: a counter at the old name is left to expire.)"""
    return f"{KEY_PREFIX}:deployment-window:{key_part(model_name)}:{key_part(deployment)}"


def deployment_probe_key(model_name: str, deployment: str, cool_down_end: float) -> str:
    """Held (SET NX) by the one worker whose call probes a deployment after the cool-down that ended at
    ``cool_down_end``: one key per cool-down, so a worker that still sees an earlier one never probes twice."""
    period = key_part(repr(cool_down_end))
    return f"{KEY_PREFIX}:deployment-probe:{key_part(model_name)}:{key_part(deployment)}:{period}"


# -- RQ's records (RQ 3.0's names; tests/unit/test_keys.py compares them with RQ's own) --------
# Queue and worker names come from the config (``[A-Za-z0-9._-]``) and ``workers.salvage.worker_name``,
# job and execution ids are hex: none comes from a caller.
RQ_QUEUES_KEY = f"{RQ_KEY_PREFIX}:queues"  # the set of queue keys `rq info` and rq-dashboard list
RQ_WORKERS_KEY = f"{RQ_KEY_PREFIX}:workers"  # every registered worker's key
RQ_SUSPENDED_KEY = f"{RQ_KEY_PREFIX}:suspended"  # set by `rq suspend`


def rq_queue_key(queue: str) -> str:
    """The list of a queue's waiting job ids."""
    return f"{RQ_KEY_PREFIX}:queue:{queue}"


def rq_job_key(job_id: str) -> str:
    """A job's hash: its function, payload, status and times."""
    return f"{RQ_KEY_PREFIX}:job:{job_id}"


def rq_started_registry_key(queue: str) -> str:
    """RQ's started registry: ``<job id>:<execution id>`` scored by when its heartbeat expires."""
    return f"{RQ_KEY_PREFIX}:wip:{queue}"


def rq_failed_registry_key(queue: str) -> str:
    """RQ's failed registry: job ids scored by when the entry expires."""
    return f"{RQ_KEY_PREFIX}:failed:{queue}"


def rq_results_key(job_id: str) -> str:
    """RQ's stream of a job's results (the gateway writes one only for a failure)."""
    return f"{RQ_KEY_PREFIX}:results:{job_id}"


def rq_worker_key(worker_name: str) -> str:
    """A worker's registration: a hash whose expiry is its liveness."""
    return f"{RQ_KEY_PREFIX}:worker:{worker_name}"


def rq_workers_by_queue_key(queue: str) -> str:
    """The keys of the workers serving a queue."""
    return f"{RQ_KEY_PREFIX}:workers:{queue}"


def rq_worker_executions_key(worker_name: str) -> str:
    """The ``<job id>:<execution id>`` of the executions a worker is running (its current jobs)."""
    return f"{RQ_KEY_PREFIX}:worker:{worker_name}:executions"


def rq_execution_key(job_id: str, execution_id: str) -> str:
    """One execution of a job: who runs it, since when, its last heartbeat."""
    return f"{RQ_KEY_PREFIX}:execution:{job_id}:{execution_id}"


@lru_cache(maxsize=4096)  # every request of a cached caller builds the same few keys again
def gitlab_cache_key(kind: str, *ref: object) -> str:
    """A cached GitLab answer: ``kind`` is token, job, project, group, member or user; ``ref`` the
    parts that name it (a credential's SHA-256; an id or path; project and user ids for a
    member), each escaped."""
    if GITLAB_CACHE_KINDS.get(kind) != len(ref):
        raise ValueError(f"a GitLab {kind!r} key takes {GITLAB_CACHE_KINDS.get(kind)} parts, not {len(ref)}")
    return f"{KEY_PREFIX}:gitlab:{kind}:" + ":".join(key_part(part) for part in ref)


def gitlab_rejected_key(credential_kind: str, credential_hash: str) -> str:
    """A credential GitLab refused moments ago, as the kind it was sent as (a personal token
    refused as a JOB-TOKEN says nothing about it as a Bearer token): refused again without asking."""
    if credential_kind not in CREDENTIAL_KINDS:
        raise ValueError(f"unknown credential kind {credential_kind!r}")
    return f"{KEY_PREFIX}:gitlab:rejected:{credential_kind}:{key_part(credential_hash)}"


def gitlab_lock_key(cache_key: str) -> str:
    """Held by the one API thread (of any process) asking GitLab for ``cache_key``."""
    return f"{KEY_PREFIX}:gitlab-lock:{_cache_key_rest(cache_key)}"


def gitlab_done_key(cache_key: str) -> str:
    """Where that thread says it is done, waking the others waiting for the same answer."""
    return f"{KEY_PREFIX}:gitlab-done:{_cache_key_rest(cache_key)}"


def _cache_key_rest(cache_key: str) -> str:
    prefix = f"{KEY_PREFIX}:gitlab:"
    if not cache_key.startswith(prefix):
        raise ValueError("not a GitLab cache key")
    return cache_key[len(prefix):]
