"""The real servers unit tests share, as fixtures pytest finds by name in every unit test
module (a module's own fixture of the same name wins). Each server starts once per test
module that asks for it, on a free loopback port, and stops after it; the helpers that go
with each (requests, parsers, example data) are in the ``*_fixtures`` modules.

- ``redis_server``: an embedded Redis; ``client``: a connection to it, on a database
  emptied for each test.
- ``sandbox``: the sandbox provider ``(server, url)``; ``base``: its URL, its scripted
  state reset for each test; ``keyed``: the URL of one that wants ``sandbox_fixtures.SECRET``.
- ``gitlab``: the GitLab stand-in ``(server, url)``; ``gitlab_url``: its URL, its state
  reset before and after each test.
- ``standin``: the Vertex AI stand-in ``(server, url, credentials path)``; ``token``: an
  OAuth token it issued for those credentials.
- ``ca_file``: a file that passes the config's readable-file check, as a CA bundle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Each fixture imports what it serves, so a test module that needs none of them imports none.


@pytest.fixture(scope="module")
def redis_server():
    from tools.embedded_redis import EmbeddedRedis

    embedded = EmbeddedRedis().start()
    yield embedded
    embedded.stop()


@pytest.fixture
def client(redis_server):
    import redis

    connection = redis.Redis.from_url(redis_server.url)
    connection.flushdb()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def sandbox():
    from sandbox.provider import serve_in_thread

    server, url = serve_in_thread()
    yield server, url
    server.stop()


@pytest.fixture
def base(sandbox):
    server, url = sandbox
    server.reset()
    return url


@pytest.fixture(scope="module")
def keyed():
    from sandbox.provider import serve_in_thread
    from tests.unit.sandbox_fixtures import SECRET

    server, url = serve_in_thread(api_key=SECRET)
    yield url
    server.stop()


@pytest.fixture(scope="module")
def gitlab():
    from sandbox.gitlab import serve_in_thread

    server, url = serve_in_thread()
    yield server, url
    server.stop()


@pytest.fixture
def gitlab_url(gitlab):
    server, url = gitlab
    server.reset()
    yield url
    server.reset()


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    from sandbox.vertex import serve_in_thread

    path = tmp_path_factory.mktemp("vertex") / "sa.json"
    server, url = serve_in_thread(credentials_path=str(path))
    yield server, url, path
    server.stop()


@pytest.fixture(scope="module")
def token(standin):
    from tests.unit.vertex_fixtures import fetch_token

    return fetch_token(standin[2])


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return str(path)
