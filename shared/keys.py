"""Every Redis key and queue name the gateway uses, named in one place.

RQ owns its own keys (``rq:queue:<name>``, ``rq:job:<id>``, registries). The
gateway's keys all start with ``aigw:`` so an operator can tell them apart.
"""

KEY_PREFIX = "aigw"

# The job function RQ imports in the worker. The API names it by path so that
# it never imports the workers package.
JOB_FUNCTION = "workers.jobs.execute"
JOB_FAILURE_CALLBACK = "workers.jobs.on_failure"


def queue_name(model_name: str) -> str:
    """One RQ queue per configured model, named after the model."""
    return model_name


def reply_stream_key(job_id: str) -> str:
    """Redis Stream a worker writes a job's outcome to, and the API reads from."""
    return f"{KEY_PREFIX}:reply:{job_id}"


def cancel_key(job_id: str) -> str:
    """Set by the API when nobody waits for a job's answer any more."""
    return f"{KEY_PREFIX}:cancel:{job_id}"


def gitlab_cache_key(kind: str, ref: str) -> str:
    """A cached GitLab answer: ``kind`` is user, job, project, group or member; ``ref``
    is an id, or the SHA-256 of a credential (a raw token is never a key or a value)."""
    return f"{KEY_PREFIX}:gitlab:{kind}:{ref}"


def gitlab_rejected_key(credential_hash: str) -> str:
    """A credential GitLab refused moments ago: refused again without asking."""
    return f"{KEY_PREFIX}:gitlab:rejected:{credential_hash}"


def gitlab_lock_key(cache_key: str) -> str:
    """Held by the one API thread (of any process) asking GitLab for ``cache_key``."""
    return f"{cache_key}:lock"


def gitlab_done_key(cache_key: str) -> str:
    """Where that thread says it is done, waking the others waiting for the same answer."""
    return f"{cache_key}:done"
