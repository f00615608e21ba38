"""Redis clients with every wait bounded.

redis-py 8 gives each socket a 5 s timeout and retries timeouts ten times by
default. A gateway wants the opposite trade: fail fast when Redis is gone (the
client gets a clear 503), and let blocking reads (``XREAD BLOCK``) wait as long
as a request's deadline, which needs a socket timeout longer than that wait.
"""

from __future__ import annotations

from redis import BlockingConnectionPool, Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
# Extra socket time beyond the longest blocking read, so the server answers first.
BLOCKING_MARGIN = 10.0


def redis_client(
    url: str,
    *,
    max_connections: int = 64,
    socket_timeout: float = COMMAND_TIMEOUT,
    retries: int = 2,
) -> Redis:
    """A client whose pool makes threads wait (bounded) for a free connection.

    ``max_connections`` should be at least the number of threads sharing it.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=COMMAND_TIMEOUT,  # wait for a free connection, then fail
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=retries),
    )
    return Redis(connection_pool=pool)


def blocking_redis_client(url: str, *, longest_wait: float, max_connections: int = 64) -> Redis:
    """A client for reads that block up to ``longest_wait`` seconds.

    No retries: re-sending a blocking read would stretch the wait past its deadline.
    """
    return redis_client(
        url,
        max_connections=max_connections,
        socket_timeout=longest_wait + BLOCKING_MARGIN,
        retries=0,
    )
