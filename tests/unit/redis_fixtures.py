"""A real Redis for unit tests that need one: an embedded server per test module, and
a client on a freshly emptied database per test.

pytest finds fixtures by name in the test module, so a test module binds them:
``server, client = redis_fixtures.server, redis_fixtures.client``.
"""

from __future__ import annotations

import pytest
import redis

from tools.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="module")
def server():
    embedded = EmbeddedRedis().start()
    yield embedded
    embedded.stop()


@pytest.fixture
def client(server):
    connection = redis.Redis.from_url(server.url)
    connection.flushdb()
    yield connection
    connection.close()
