"""The two stacks compared, behind one small interface: start, the URL and credential a
client uses, the processes whose CPU counts as the stack's (by role), stop.

The gateway runs with its defaults: ``WEB_CONCURRENCY`` and ``WEB_THREADS`` as
``shared.settings`` defaults them (or as this process's environment sets them), the
example config's first model's ``workers`` and ``concurrency`` (or ``WORKER_PROCESSES`` /
``WORKER_CONCURRENCY``), GitLab identity checked with the stand-in and cached, and three
rate limits on every request, as ``bench.gateway`` sets up (they never refuse, so every
request pays for the check and the settlement).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.peers.litellm_proxy import MASTER_KEY, LiteLLMProxy
from bench.processes import children, cpu_seconds, stack_processes
from sandbox.gitlab import DEMO_TOKEN
from shared.config import load_config
from shared.settings import Settings
from tests.harness import ROOT, Stack

EXAMPLE_CONFIG = ROOT / "config" / "example.yaml"
GATEWAY_CONFIG = """
models:
  - name: bench
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 60s
    workers: {workers}
    concurrency: {concurrency}
    max_queue_depth: 100000
    # Limits that never refuse, so every request pays for the check and the settlement.
    rate_limit: {{requests_per_minute: 100000000, tokens_per_minute: 1000000000, requests_per_day: 1000000000}}
"""


@dataclass(frozen=True)
class GatewayLayout:
    web_concurrency: int
    web_threads: int
    workers: int
    concurrency: int
    env: tuple[tuple[str, str], ...] = ()  # more of the gateway's environment, for experiments

    @classmethod
    def defaults(cls, environ=None) -> GatewayLayout:
        """What a deployment gets without setting anything, unless ``environ`` says otherwise."""
        settings = Settings.from_env(os.environ if environ is None else environ)
        model = load_config(str(EXAMPLE_CONFIG), {}).models[0]
        return cls(settings.web_concurrency, settings.web_threads, settings.worker_processes or model.workers,
                   settings.worker_concurrency or model.concurrency)

    def describe(self) -> str:
        return (f"gunicorn {self.web_concurrency} x {self.web_threads} threads, "
                f"{self.workers} worker processes x {self.concurrency} jobs"
                + "".join(f", {name}={value}" for name, value in self.env))


class Gateway:
    label = "gateway"
    token = DEMO_TOKEN

    def __init__(self, directory: Path, sandbox_url: str, layout: GatewayLayout):
        self.layout = layout
        config = GATEWAY_CONFIG.format(sandbox=sandbox_url, workers=layout.workers, concurrency=layout.concurrency)
        # The harness also starts a sandbox of its own; it stays idle: the model points at the shared one.
        self.stack = Stack(directory, config, web_workers=layout.web_concurrency, web_threads=layout.web_threads,
                           env={"LOG_LEVEL": "warning", **dict(layout.env)})

    def start(self) -> None:
        self.stack.start()

    @property
    def url(self) -> str:
        return f"{self.stack.url}/v1/chat/completions"

    def processes(self) -> dict[str, list[int]]:
        """The gateway's own processes by role (the GitLab stand-in apart: GitLab is not the gateway)."""
        found = stack_processes(self.stack)
        groups: dict[str, list[int]] = {"web master": [], "web workers": [], "worker supervisor": [],
                                        "worker processes": [], "redis": [], "gitlab stand-in": []}
        for label, pid in found.items():
            if label == "web master":
                groups["web master"].append(pid)
            elif label.startswith("web worker"):
                groups["web workers"].append(pid)
            elif label == "worker supervisor":
                groups["worker supervisor"].append(pid)
            elif label.startswith("worker "):
                groups["worker processes"].append(pid)
            elif label == "redis":
                groups["redis"].append(pid)
            elif label == "gitlab":
                groups["gitlab stand-in"].append(pid)
        return groups

    def stop(self) -> None:
        self.stack.stop()


class LiteLLM:
    label = "litellm"
    token = MASTER_KEY

    def __init__(self, directory: Path, sandbox_url: str, provider_key: str):
        self.proxy = LiteLLMProxy(directory, sandbox_url, provider_key)

    def start(self) -> None:
        self.proxy.start()

    @property
    def url(self) -> str:
        return f"{self.proxy.url}/v1/chat/completions"

    def processes(self) -> dict[str, list[int]]:
        supervisor = self.proxy.server_pid()
        workers = self.proxy.workers()
        others = [pid for pid in children(supervisor) if pid not in workers]
        return {"supervisor": [supervisor], "workers": workers, "helpers": others}

    def stop(self) -> None:
        self.proxy.stop()


# Roles outside the stack under test: reported, not counted in its total.
EXTERNAL = {"gitlab stand-in"}


def role_cpu(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each role's processes together."""
    used = {}
    for role, pids in roles.items():
        total = 0.0
        for pid in pids:
            try:
                total += cpu_seconds(pid)
            except (OSError, ValueError, IndexError):
                continue  # gone: its CPU since the last reading is lost (rare: nothing restarts here)
        used[role] = total
    return used
