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
