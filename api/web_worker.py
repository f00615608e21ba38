"""The gunicorn worker class the API runs: gthread, with its request threads reused
last-in, first-out (``shared.threadpool``).

gthread hands each request to a ``ThreadPoolExecutor``, whose idle threads take
work in turn: at low load every request ran on a different thread among dozens,
gone cold, while the thread that had just answered was still handing its
connection back. gthread's ``get_thread_pool`` hook is there for such a pool.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker

from shared.threadpool import LifoThreadPool


class GatewayThreadWorker(ThreadWorker):
    def get_thread_pool(self):
        return LifoThreadPool(self.cfg.threads, name="web")
