"""LiteLLM's proxy as a peer to benchmark against: installed by ``make bench-peers`` into its
own virtual environment (``.venv-peers/``, from the hash-locked
``bench/peers/litellm-requirements.txt``), run with two uvicorn workers, no database, a
master key, and one model that is the sandbox provider.

Run offline: LiteLLM fetches its model cost map from GitHub when it is imported, unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is true (litellm/litellm_core_utils/get_model_cost_map.py);
its telemetry is off unless an operator turns groups on, and ``LITELLM_TELEMETRY_DISABLED``
vetoes it outright (litellm/proxy/telemetry/settings.py). ``bench.peers.egress`` checks,
under strace, that the proxy then connects to nothing but the sandbox.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from bench.processes import children, cpu_seconds
from tests.harness import ROOT, wait_for
from tools.embedded_redis import free_port

VENV = ROOT / ".venv-peers"
LOCK = Path(__file__).with_name("litellm-requirements.txt")
MASTER_KEY = "sk-bench-litellm-master-key"
WORKERS = 2
# No model cost map download, no telemetry; WARNING also turns uvicorn's per-request access
# line off (litellm/proxy/proxy_cli.py passes LITELLM_LOG to uvicorn as its log level), as
# LOG_LEVEL=warning does for the gateway in these benchmarks.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY_DISABLED": "True",
    "LITELLM_LOG": "WARNING",
}
# Variables that would point LiteLLM at something other than this benchmark's stand-ins.
SCRUBBED_PREFIXES = ("OPENAI_", "ANTHROPIC_", "AZURE_", "AWS_", "LITELLM_", "DATABASE_URL", "REDIS_")
CONFIG = """model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {sandbox}/v1
      api_key: {key}
general_settings:
  master_key: {master_key}
"""


def installed() -> bool:
    return (VENV / "bin" / "litellm").exists()


def version() -> str:
    found = subprocess.run([str(VENV / "bin" / "python"), "-c",
                            "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True, check=True, env=environment())
    return found.stdout.strip()


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(OFFLINE_ENV)
    return env


class LiteLLMProxy:
    """One LiteLLM proxy: a uvicorn supervisor and ``WORKERS`` worker processes."""

    def __init__(self, directory: Path, sandbox_url: str, provider_key: str, *, model: str = "bench",
                 wrapper: list[str] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sandbox_url = sandbox_url
        self.provider_key = provider_key
        self.model = model
        self.wrapper = wrapper or []  # e.g. strace, for the egress check
        self.port = 0
        self.popen: subprocess.Popen | None = None
        self.log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def start(self, timeout: float = 180.0) -> LiteLLMProxy:
        if not installed():
            raise SystemExit(f"LiteLLM is not installed in {VENV}: run `make bench-peers`")
        config = self.dir / "litellm.yaml"
        config.write_text(CONFIG.format(model=self.model, sandbox=self.sandbox_url, key=self.provider_key,
                                        master_key=MASTER_KEY))
        self.port = free_port()
        command = [*self.wrapper, str(VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                   "--port", str(self.port), "--num_workers", str(WORKERS),
                   # uvicorn kills a worker that does not answer its supervisor's ping within 5 s,
                   # which a worker still importing LiteLLM on a busy 2-core machine may not.
                   "--timeout_worker_healthcheck", "120"]
        self.log_file = open(self.dir / "litellm.log", "w")
        self.popen = subprocess.Popen(command, cwd=self.dir, env=environment(), stdout=self.log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def log(self) -> str:
        if self.log_file and not self.log_file.closed:
            self.log_file.flush()
        return (self.dir / "litellm.log").read_text(errors="replace")

    def workers(self) -> list[int]:
        """The worker processes: the supervisor's children other than multiprocessing's helpers."""
        found = []
        for pid in children(self.server_pid()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if b"resource_tracker" not in cmdline.read():
                        found.append(pid)
            except OSError:
                continue
        return found

    def server_pid(self) -> int:
        """The uvicorn supervisor: the process started, or its child when run under a wrapper."""
        if not self.wrapper:
            return self.popen.pid
        found = children(self.popen.pid)
        return found[0] if found else self.popen.pid

    def wait_ready(self, timeout: float) -> None:
        """Until the proxy answers a chat request and both workers have finished starting
        (uvicorn says nothing when a worker is ready, so: until neither burns CPU starting)."""
        def answers() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"LiteLLM exited early:\n{self.log()[-3000:]}")
            try:
                reply = requests.post(f"{self.url}/v1/chat/completions", timeout=10,
                                      headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                      json={"model": self.model, "messages": [{"role": "user", "content": "hi"}]})
            except requests.RequestException:
                return False
            if reply.status_code != 200:
                raise AssertionError(f"LiteLLM answered {reply.status_code}: {reply.text[:500]}")
            return True

        started = time.monotonic()
        wait_for(answers, timeout=timeout, interval=0.5, message="LiteLLM to answer")
        previous: dict[int, float] = {}

        def settled() -> bool:
            nonlocal previous
            workers = self.workers()
            now = {}
            for pid in workers:
                try:
                    now[pid] = cpu_seconds(pid)
                except OSError:
                    return False
            busy = [pid for pid in now if now[pid] - previous.get(pid, 0.0) > 0.2]
            previous = now
            return len(now) == WORKERS and not busy

        wait_for(settled, timeout=max(10.0, timeout - (time.monotonic() - started)), interval=1.0,
                 message=f"LiteLLM's {WORKERS} workers to finish starting")

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self.log_file:
            self.log_file.close()
