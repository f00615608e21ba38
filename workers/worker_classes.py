"""The RQ worker class the gateway runs: non-forking, JSON only."""

from __future__ import annotations

from rq import SimpleWorker
from rq.serializers import JSONSerializer

# A SIGKILLed worker stops counting as live once its key expires. RQ's default of
# 420 s would keep sending requests to a dead model for minutes.
WORKER_TTL = 35


class GatewayWorker(SimpleWorker):
    """RQ's ``SimpleWorker``: runs each job in the worker process itself.

    Forking per job costs about 12 ms against 3 ms here, and a job's state (HTTP
    connection pools) survives between jobs.
    """

    def __init__(self, queues, **kwargs):
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        super().__init__(queues, **kwargs)

    def heartbeat(self, timeout=None, pipeline=None):
        """RQ sends a heartbeat's three commands one by one, around every job; one
        round trip does the same work (about 0.5 ms of every request's latency)."""
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline=pipeline)
        with self.connection.pipeline(transaction=False) as own:
            super().heartbeat(timeout, pipeline=own)
            own.execute()
