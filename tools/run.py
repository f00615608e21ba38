"""``make run``: start the whole gateway on one machine, from nothing.

1. Redis: an embedded one on a free loopback port (nothing persisted, gone when it
   stops), unless ``REDIS_URL`` is set: then that one, which must answer (exit 2 if
   not). Never whatever happens to answer at localhost:6379: on a developer's machine
   that is someone else's, and the gateway's keys would stay there.
2. Providers: with the example config, each provider whose key is not set is
   replaced by the local SANDBOX provider (canned answers), and the log says so;
   its models need no key, so no process warns that they have none. Each model
   then runs one worker process unless ``WORKER_PROCESSES`` is set.
3. GitLab: without ``GITLAB_URL``, a local GitLab STAND-IN with fixed demo users
   and projects (``sandbox/gitlab.py``); its demo user's token goes in the curl line.
4. The ``Procfile``'s processes (``web`` and ``worker``), with their output
   prefixed; then a ``curl`` line that works. Ctrl-C stops everything.

The API and its metrics listen on 127.0.0.1 only unless ``HOST`` says otherwise:
the demo tokens are public, and a real provider key may be set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests

from sandbox.gitlab import ADMIN_TOKEN, DEMO_TOKEN
from shared.config import ConfigError, load_config
from shared.config_parse import SANDBOX_PROVIDER_ENV
from shared.keys import queue_name
from shared.rq_records import live_workers
from shared.settings import masked_url
from shared.urls import is_loopback_host
from tools.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "example.yaml"
SANDBOXED_PROVIDERS = {"OPENAI_API_KEY": "OPENAI_BASE_URL", "ANTHROPIC_API_KEY": "ANTHROPIC_BASE_URL"}
STOP_GRACE = 20.0


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, ValueError):
        return False


def port_free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def read_procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def relay(name: str, stream) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{name:>6} | {line}")
        sys.stdout.flush()


class Launcher:
    def __init__(self):
        self.env = dict(os.environ)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.embedded: EmbeddedRedis | None = None
        self.stopping = threading.Event()
        self.failed = False
        self.token = DEMO_TOKEN

    def prepare(self) -> None:
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = bin_dir + os.pathsep + self.env.get("PATH", "")
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        url = self.env.get("REDIS_URL", "").strip()
        if url:
            if not redis_answers(url):
                print(f"config error: REDIS_URL: no Redis answers at {masked_url(url)} (unset REDIS_URL and "
                      "`make run` starts an embedded one)", file=sys.stderr)
                raise SystemExit(2)
            say(f"using the Redis at REDIS_URL ({masked_url(url)}); the gateway's keys stay there")
        else:
            # Its own session: Ctrl-C reaches the terminal's whole process group, and Redis must
            # outlive the workers and the web processes, which shutdown() stops first.
            self.embedded = EmbeddedRedis(own_session=True).start()
            url = self.embedded.url
            say(f"REDIS_URL is not set: started an embedded Redis at {url} (nothing is persisted)")
        self.env["REDIS_URL"] = url
        if not self.env.get("CONFIG_FILE_PATH"):
            self.env["CONFIG_FILE_PATH"] = str(EXAMPLE_CONFIG)
            self.sandbox_missing_providers()
            if not self.env.get("WORKER_PROCESSES"):
                # The example's `workers: 4` per model is a server's sizing: 16 processes idle on a laptop.
                self.env["WORKER_PROCESSES"] = "1"
                say("one worker process per model (the example config's `workers` is sized for a server; "
                    "WORKER_PROCESSES=N make run for N)")
        if self.env.get("GITLAB_URL"):
            say(f"using the GitLab at {self.env['GITLAB_URL']}")
            self.token = "<your GitLab token>"
        else:
            self.start_gitlab_stand_in()
        say(f"config: {self.env['CONFIG_FILE_PATH']}")
        try:
            load_config(self.env["CONFIG_FILE_PATH"], self.env)
        except ConfigError as error:
            for problem in error.problems:
                print(f"config error: {problem}", file=sys.stderr)
            raise SystemExit(2) from None

    def start_helper(self, name: str, module: str) -> str:
        """Start one of the project's stand-ins and return the URL it listens on."""
        process = self.spawn(name, [sys.executable, "-m", module, "--port", "0"], relay_output=False)
        match = None
        for line in iter(process.stdout.readline, ""):
            sys.stdout.write(f"{name:>6} | {line}")
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                break
        if not match:
            raise SystemExit(f"the {name} stand-in did not start")
        threading.Thread(target=relay, args=(name, process.stdout), daemon=True).start()
        return match.group(1)

    def start_gitlab_stand_in(self) -> None:
        url = self.start_helper("gitlab", "sandbox.gitlab")
        self.env["GITLAB_URL"] = url
        self.env["GITLAB_API_TOKEN"] = ADMIN_TOKEN
        self.token = DEMO_TOKEN
        say(f"GITLAB_URL is not set: callers are checked against a local GitLab STAND-IN at {url} "
            f"(fixed demo users and projects; not a real GitLab). Demo user 'alice', token: {DEMO_TOKEN}")

    def sandbox_missing_providers(self) -> None:
        missing = [key for key in SANDBOXED_PROVIDERS if not self.env.get(key)]
        if not missing:
            return
        base = self.start_helper("sandbox", "sandbox.provider")
        self.env[SANDBOX_PROVIDER_ENV] = base  # its models need no key: no process warns that they have none
        for key in missing:
            self.env[SANDBOXED_PROVIDERS[key]] = f"{base}/v1"
            say(f"{key} is not set: its models are served by the SANDBOX provider at {base} "
                "(canned, deterministic answers; not a real model)")

    def spawn(self, name: str, command, *, relay_output: bool = True) -> subprocess.Popen:
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, shell=isinstance(command, str), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.children.append((name, process))
        if relay_output:
            threading.Thread(target=relay, args=(name, process.stdout), daemon=True).start()
        return process

    def url(self, port: str) -> str:
        """Where a client on this machine reaches ``port`` on the address the gateway listens on."""
        host = self.env.get("HOST") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def wait_ready(self, port: str, timeout: float = 60.0) -> bool:
        """The API is ready (``/ready``, which tells anyone no more) and one model has a live worker
        (read in Redis, as the API does: ``/ready`` shows workers to a GitLab administrator only)."""
        deadline = time.monotonic() + timeout
        models = [model.name for model in load_config(self.env["CONFIG_FILE_PATH"], self.env).models]
        client = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=1, socket_connect_timeout=1)
        while time.monotonic() < deadline and not self.stopping.is_set():
            if any(p.poll() is not None for _, p in self.children):
                return False
            try:
                ready = requests.get(f"{self.url(port)}/ready", timeout=1).json()
                if ready.get("status") == "ready" and any(live_workers(client, queue_name(model)) for model in models):
                    return True
            except (requests.RequestException, ValueError, redis.RedisError):
                pass
            self.stopping.wait(0.25)
        return False

    def first_model(self) -> str:
        return load_config(self.env["CONFIG_FILE_PATH"], self.env).models[0].name

    def run(self) -> int:
        self.prepare()
        port = self.env.setdefault("PORT", "8080")
        if not self.env.get("HOST"):
            self.env["HOST"] = "127.0.0.1"
            say("listening on 127.0.0.1 only (HOST=0.0.0.0 to listen on every interface)")
        host = self.env["HOST"]
        if not is_loopback_host(host):
            # HOST may also be a shell's own variable (zsh's hostname), exported by a dotfile.
            say(f"WARNING: listening on HOST={host}, not loopback: whoever reaches it can use the demo "
                "tokens, and any provider key set here")
        if not self.env.get("METRICS_PORT") and not port_free(9090, host):
            self.env["METRICS_PORT"] = str(free_port())
            say(f"port 9090 is taken: metrics are served on {self.env['METRICS_PORT']} instead")
        say(f"metrics: {self.url(self.env.get('METRICS_PORT', '9090'))}/metrics")
        for name, command in read_procfile().items():
            self.spawn(name, command)
        if self.wait_ready(port):
            body = json.dumps({"model": self.first_model(),
                               "messages": [{"role": "user", "content": "Hello!"}]})
            say("the gateway is ready. Try:")
            print(f"\n  curl -s {self.url(port)}/v1/chat/completions \\\n"
                  f"    -H 'Authorization: Bearer {self.token}' \\\n"
                  f"    -H 'Content-Type: application/json' \\\n    -d '{body}'\n", flush=True)
        while not self.stopping.is_set():
            for name, process in self.children:
                if process.poll() is not None:
                    say(f"{name} exited with code {process.returncode}; stopping everything")
                    self.failed = True
                    self.stopping.set()
                    break
            self.stopping.wait(0.5)
        return 1 if self.failed else 0

    def stop(self, *_args) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        for _name, process in self.children:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for name, process in self.children:
            # The whole group, not only its leader (a Procfile line runs under a shell, which dies at
            # once): Redis stops last, once nothing that may still write to it is left.
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
                while group_alive(process.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if group_alive(process.pid):
                    raise subprocess.TimeoutExpired(name, STOP_GRACE)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                os.killpg(process.pid, signal.SIGKILL)
        if self.embedded:
            self.embedded.stop()
        say("stopped")


def group_alive(pgid: int) -> bool:
    """Is any process of the group ``pgid`` still running?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    launcher = Launcher()
    signal.signal(signal.SIGINT, launcher.stop)
    signal.signal(signal.SIGTERM, launcher.stop)
    try:
        return launcher.run()
    finally:
        launcher.shutdown()


if __name__ == "__main__":
    sys.exit(main())
