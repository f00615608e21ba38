"""Real processes for integration tests and benchmarks: a Redis of their own, the
sandbox provider, gunicorn serving the API, and ``python -m workers``.

Every process writes to its own log file under the stack's directory, so a test
can assert on log lines and a failure shows what each process said.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests

from sandbox.gitlab import ADMIN_TOKEN, DEMO_TOKEN
from tools.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_KEY = "sk-sandbox-provider-key-0123456789"
CREDENTIAL_HEADERS = {"authorization", "private-token", "x-api-key", "job-token"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the stand-in's GitLab administrator: /ready's details


def wait_for(predicate, *, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class Process:
    def __init__(self, name: str, command: list[str], env: dict, log_path: Path):
        self.name = name
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int, *, group: bool = False) -> None:
        if self.popen.poll() is None:
            if group:
                os.killpg(self.popen.pid, signum)
            else:
                self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        self.log_file.close()


def start_sandbox(directory: Path, env: dict, *, api_key: str | None = PROVIDER_KEY,
                  latency_ms: int = 0) -> tuple[Process, str]:
    command = [sys.executable, "-m", "sandbox.provider", "--port", "0", "--latency-ms", str(latency_ms)]
    if api_key:
        command += ["--api-key", api_key]
    process = Process("sandbox", command, env, directory / "sandbox.log")
    found = wait_for(lambda: re.search(r"listening on (http://\S+)", process.log()), timeout=20,
                     message="the sandbox provider to listen")
    return process, found.group(1)


def start_gitlab(directory: Path, env: dict) -> tuple[Process, str]:
    process = Process("gitlab", [sys.executable, "-m", "sandbox.gitlab", "--port", "0"], env,
                      directory / "gitlab.log")
    found = wait_for(lambda: re.search(r"listening on (http://\S+)", process.log()), timeout=20,
                     message="the GitLab stand-in to listen")
    return process, found.group(1)


def start_vertex(directory: Path, env: dict) -> tuple[Process, str, Path]:
    credentials = directory / "vertex-service-account.json"
    process = Process("vertex", [sys.executable, "-m", "sandbox.vertex", "--port", "0",
                                 "--write-credentials", str(credentials)], env, directory / "vertex.log")
    found = wait_for(lambda: re.search(r"listening on (http://\S+)", process.log()), timeout=20,
                     message="the Vertex stand-in to listen")
    return process, found.group(1), credentials


class Stack:
    """The gateway as real processes. ``config`` is YAML text; ``{sandbox}`` in it
    becomes the sandbox provider's URL."""

    def __init__(self, directory: Path, config: str, *, web_workers: int = 1, web_threads: int = 16,
                 env: dict | None = None, sandbox_latency_ms: int = 0, redis_options: dict | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_text = config
        self.web_workers = web_workers
        self.web_threads = web_threads
        self.extra_env = env or {}
        self.sandbox_latency_ms = sandbox_latency_ms
        self.redis_options = redis_options or {}  # EmbeddedRedis's: appendonly, appendfsync
        self.redis_server: EmbeddedRedis | None = None
        self.sandbox: Process | None = None
        self.sandbox_url = ""
        self.gitlab: Process | None = None
        self.gitlab_url = ""
        self.vertex: Process | None = None
        self.vertex_url = ""
        self.web: Process | None = None
        self.workers: Process | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------
    def base_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": self.redis_server.url,
            "CONFIG_FILE_PATH": str(self.dir / "config.yaml"),
            "SANDBOX_PROVIDER_KEY": PROVIDER_KEY,
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
            "METRICS_ENABLED": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "metrics"),  # one host's directory, per stack
        })
        env.update(self.extra_env)
        return env

    def start(self) -> Stack:
        self.redis_server = EmbeddedRedis(**self.redis_options).start()
        self.env = self.base_env()
        self.sandbox, self.sandbox_url = start_sandbox(self.dir, self.env,
                                                       latency_ms=self.sandbox_latency_ms)
        self.gitlab, self.gitlab_url = start_gitlab(self.dir, self.env)
        self.env.setdefault("GITLAB_URL", self.gitlab_url)
        self.env.setdefault("GITLAB_API_TOKEN", ADMIN_TOKEN)
        config = self.config_text.replace("{sandbox}", self.sandbox_url)
        if "{vertex}" in config:  # a Vertex AI stand-in, and a service-account key for it
            self.vertex, self.vertex_url, credentials = start_vertex(self.dir, self.env)
            config = config.replace("{vertex}", self.vertex_url).replace("{vertex_credentials}", str(credentials))
        (self.dir / "config.yaml").write_text(config)
        self.port = free_port()
        self.env.update({"PORT": str(self.port), "WEB_CONCURRENCY": str(self.web_workers),
                         "WEB_THREADS": str(self.web_threads)})
        self.web = Process("web", [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py",
                                   "api.wsgi:app"], self.env, self.dir / "web.log")
        self.start_workers()
        self.wait_ready()
        return self

    def __enter__(self) -> Stack:
        """``with Stack(...) as stack:`` starts it, and stops whatever started however it ends."""
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start_workers(self, *args: str) -> Process:
        self.workers = Process("workers", [sys.executable, "-m", "workers", *args], self.env,
                               self.dir / f"workers-{time.monotonic_ns()}.log")
        return self.workers

    def wait_ready(self, timeout: float = 45.0) -> dict:
        def ready():
            for process in (self.web, self.workers):
                if process.popen.poll() is not None:
                    raise AssertionError(f"{process.name} exited early:\n{process.log()[-3000:]}")
            try:
                body = requests.get(f"{self.url}/ready", headers=ADMIN, timeout=2).json()
            except (requests.RequestException, ValueError):
                return None
            expected = self.expected_workers()
            models = body.get("models", {})
            if not all(models.get(name, {}).get("workers", 0) >= count for name, count in expected.items()):
                return None
            # Every gunicorn worker has booted, not just the one that answered (each says so at info).
            if self.env.get("LOG_LEVEL", "info") not in ("debug", "info"):
                return body
            return body if self.web.log().count("api process ready") >= self.web_workers else None

        return wait_for(ready, timeout=timeout, interval=0.1, message="the gateway to be ready")

    def expected_workers(self) -> dict[str, int]:
        from shared.config import load_config

        config = load_config(str(self.dir / "config.yaml"), self.env)
        processes = self.env.get("WORKER_PROCESSES")  # `python -m workers` runs this many of every model
        return {model.name: int(processes) if processes else model.workers for model in config.models
                if model.workers}

    def stop(self) -> None:
        for process in (self.workers, self.web, self.sandbox, self.gitlab, self.vertex):
            if process is not None:
                process.stop()
        if self.redis_server:
            self.redis_server.stop()

    # -- helpers for tests -------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url)

    def chat(self, model: str, content: str, *, timeout: float = 30, headers: dict | None = None,
             **extra) -> requests.Response:
        """A chat request, as the demo user unless ``headers`` carry a credential."""
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        return requests.post(f"{self.url}/v1/chat/completions", json=body, headers=with_credential(headers),
                             timeout=timeout)

    def ready(self) -> requests.Response:
        """``GET /ready`` as a GitLab administrator: with the details (models, workers, queues,
        deployments, GitLab) anyone else is not shown."""
        return requests.get(f"{self.url}/ready", headers=ADMIN, timeout=10)

    def gitlab_calls(self, path: str | None = None) -> list[dict]:
        calls = requests.get(f"{self.gitlab_url}/_gitlab/calls", timeout=5).json()["calls"]
        return [c for c in calls if path is None or c["path"] == path]

    def gitlab_fault(self, **fault) -> None:
        if fault:
            requests.post(f"{self.gitlab_url}/_gitlab/fault", json=fault, timeout=5).raise_for_status()
        else:
            requests.delete(f"{self.gitlab_url}/_gitlab/fault", timeout=5).raise_for_status()

    def sandbox_calls(self, key: str) -> int:
        answer = requests.get(f"{self.sandbox_url}/_sandbox/calls", params={"key": key}, timeout=5)
        return answer.json()["count"]

    def sandbox_log(self) -> list[dict]:
        return requests.get(f"{self.sandbox_url}/_sandbox/log", timeout=5).json()["requests"]

    def get(self, path: str, *, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=with_credential(headers), timeout=10, **kwargs)

    def logs(self) -> str:
        return "\n".join(p.log() for p in (self.web, self.workers) if p is not None)

    def access_records(self, until, *, timeout: float = 10.0) -> list[dict]:
        """The web processes' access records (JSON logs), once ``until(records)`` holds: each
        is written just after its response went out, so a test that has the response polls."""
        def read() -> list[dict] | None:
            records = [json.loads(line) for line in self.web.log().splitlines() if line.startswith("{")]
            access = [r for r in records if r.get("logger") == "aigw.access"]
            return access if until(access) else None
        return wait_for(read, timeout=timeout, message="the access records")

    def access_record(self, request_id: str, *, timeout: float = 10.0) -> dict:
        """The access record of the request with ``request_id``, waiting for it."""
        records = self.access_records(lambda found: any(r.get("request_id") == request_id for r in found),
                                      timeout=timeout)
        return next(r for r in records if r.get("request_id") == request_id)


def in_background(stack: Stack, results: dict, name: str, model: str, content: str, *, timeout: float = 60,
                  **extra) -> threading.Thread:
    """A chat request (``X-Request-Id: name``) sent from a thread of its own, already started:
    ``results[name]`` becomes its response, or the ``requests`` error that ended it."""
    def call():
        try:
            results[name] = stack.chat(model, content, headers={"X-Request-Id": name}, timeout=timeout, **extra)
        except requests.RequestException as error:
            results[name] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def job_id_for(stack: Stack, request_id: str) -> str:
    """The id of the RQ job of the request with ``request_id``, once it is written (the job's
    description names the request)."""
    client = stack.redis()

    def find():
        for key in client.scan_iter("rq:job:*"):
            if client.type(key) == b"hash" and f"request_id={request_id}".encode() == (
                    client.hget(key, "description") or b"").split(b" ")[-1]:
                return key.decode().split(":", 2)[2]
        return None

    return wait_for(find, timeout=10, message=f"the job of {request_id}")


def with_credential(headers: dict | None) -> dict:
    """``headers``, plus the demo user's token unless they already carry a credential."""
    headers = dict(headers or {})
    if not CREDENTIAL_HEADERS & {name.lower() for name in headers}:
        headers["Authorization"] = f"Bearer {DEMO_TOKEN}"
    return headers
