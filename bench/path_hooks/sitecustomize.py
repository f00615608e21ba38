"""Timestamps along the request path, for ``python -m bench.path`` only.

Python imports ``sitecustomize`` at start-up from the path; ``bench.path`` puts this
directory on the PYTHONPATH of the gateway's processes and sets BENCH_PATH_DIR. Each
process then wraps a few functions (no gateway code knows about this) and writes
``<time> <mark> <job id>`` lines to BENCH_PATH_DIR/<pid>.marks.
"""

import os
import threading
import time

DIRECTORY = os.environ.get("BENCH_PATH_DIR")
_marks: list[tuple[float, str, str | None]] = []
_job = threading.local()  # the job id the current thread serves


def mark(label: str, job_id: str | None = None) -> None:
    _marks.append((time.time(), label, job_id or getattr(_job, "id", None)))


def _flush_forever() -> None:
    while True:
        time.sleep(0.5)
        with open(os.path.join(DIRECTORY, f"{os.getpid()}.marks"), "w") as out:
            out.writelines(f"{at:.6f} {label} {job_id}\n" for at, label, job_id in list(_marks))


def _wrap(owner, name: str, before=None, after=None) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if before:
            before(*args, **kwargs)
        result = original(*args, **kwargs)
        if after:
            after(result, *args, **kwargs)
        return result

    setattr(owner, name, wrapper)


def _web() -> None:
    import falcon

    import api.admission
    from shared.ratelimit import RateLimiter
    from shared.replies import ReplyChannel

    def enqueueing(request, **_kwargs):
        _job.id = request.job_id
        _marks.append((_job.began, "web_in", _job.id))
        mark("enqueue_begin")

    _wrap(falcon.App, "__call__", before=lambda *a, **k: setattr(_job, "began", time.time()),
          after=lambda *a, **k: mark("web_out"))
    _wrap(api.admission, "job_enqueue", before=enqueueing)  # the job's records, built for the admission script
    _wrap(RateLimiter, "take", before=lambda *a, **k: mark("enqueue_sent"))
    _wrap(ReplyChannel, "wait", before=lambda *a, **k: mark("wait_begin"), after=lambda *a, **k: mark("woke"))


def _worker() -> None:
    import workers.jobs
    from shared.replies import ReplyChannel
    from workers.worker_classes import ThreadedWorker

    def dequeued(result, *_args):
        if result is not None:
            mark("dequeued", result[0].id)

    def executing(request):
        _job.id = request.job_id
        mark("job_starts")

    _wrap(ThreadedWorker, "_dequeue", after=dequeued)
    _wrap(ThreadedWorker, "_run", before=lambda _self, running: mark("job_thread", running.job.id))
    _wrap(workers.jobs, "_execute", before=executing)
    from workers.cancel import CancellableAdapter

    _wrap(CancellableAdapter, "send", before=lambda *a, **k: mark("upstream_sent"),
          after=lambda *a, **k: mark("upstream_answered"))
    _wrap(ReplyChannel, "send_result", before=lambda *a, **k: mark("answer_built"))
    _wrap(ThreadedWorker, "_finish", before=lambda _self, running: mark("bookkeeping_done", running.job.id))


if DIRECTORY:
    command = open("/proc/self/cmdline", "rb").read().replace(b"\0", b" ").decode()
    if "gunicorn" in command:
        _web()
    elif "-m workers" in command:
        _worker()
    if "gunicorn" in command or "-m workers" in command:
        # Both fork their working processes: each child starts its own writer.
        os.register_at_fork(after_in_child=lambda: (_marks.clear(), threading.Thread(
            target=_flush_forever, daemon=True).start()))
