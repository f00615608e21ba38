"""Every gateway container's entry point (the image's ENTRYPOINT): the container's own settings,
then ``exec`` of its command, which so runs as PID 1 and receives SIGTERM itself.

What it settles before the gateway's own checks (which name every other problem and exit 2):

- The stand-ins, as ``make run`` does (``tools/run.py``): where ``STANDIN_URL`` names the
  stand-in service (compose sets it; so does the README's ``docker run``), an unset ``GITLAB_URL``
  means the GitLab stand-in (``sandbox/gitlab.py``, its admin token as ``GITLAB_API_TOKEN``), and
  each unset provider key means the sandbox provider for that provider's models. The log says so.
- Refusals: a real provider key while the GitLab stand-in vouches for callers (its demo tokens are
  public: anyone could spend the key), and the GitLab stand-in with the API published anywhere but
  loopback (``PUBLISHED_ADDRESS``, which compose passes along with the port mapping it makes).
- ``python -m tools.rq_dashboard`` without ``RQ_DASHBOARD_USERNAME`` and ``RQ_DASHBOARD_PASSWORD``:
  rq-dashboard would serve everyone without them.
- Provider keys held by other containers: compose gives the API ``<KEY>_SET=yes`` for each key the
  workers hold, never the key (the API calls no provider). That counts as set for the two points
  above; the API's process then gets a placeholder in the key's place, which it never sends, so
  its configuration check does not warn that the model has no key.
- Logs: the image's ``LOG_DIR`` gets a directory per container (its hostname), because several
  containers share the log volume and file names hold the process id, which repeats across
  containers (every container's first process is PID 1).

Each problem is one ``config error:`` line on stderr, then exit 2 (``shared.config_parse``'s
convention), so a bounded restart policy stops instead of looping silently.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from urllib.parse import urlsplit

from sandbox.gitlab import ADMIN_TOKEN
from shared.config_parse import SANDBOX_PROVIDER_ENV
from shared.urls import is_loopback_host

IMAGE_LOG_DIR = "/var/log/ai-gateway"
# The provider keys example.yaml names, and the base URL each one's models read.
PROVIDERS = {"OPENAI_API_KEY": "OPENAI_BASE_URL", "ANTHROPIC_API_KEY": "ANTHROPIC_BASE_URL"}
# In the API's process, in place of a key only the workers hold: the API calls no provider.
KEY_HELD_BY_THE_WORKERS = "held-by-the-workers"
GITLAB_STANDIN_PORT = 8001
PROVIDER_STANDIN_PORT = 8000
STANDIN_WAIT = 60.0


def say(message: str) -> None:
    print(f"[container] {message}", file=sys.stderr, flush=True)


def key_is_set(env: dict[str, str], key: str) -> bool:
    """The key, or compose's word that another container of the stack holds it."""
    return bool(env.get(key) or env.get(f"{key}_SET"))


def settle(env: dict[str, str], command: list[str]) -> list[str]:
    """Set what the stand-ins need in ``env``; return the problems (each one line)."""
    problems: list[str] = []
    role = " ".join(command)
    if "tools.rq_dashboard" in role:
        for name in ("RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD"):
            if not env.get(name):
                problems.append(f"{name}: required: rq-dashboard serves everyone without credentials")
        return problems
    if "tools.container.standin" in role:
        return problems  # the stand-ins need none of the below, and write no log files
    standin = env.get("STANDIN_URL", "").strip()
    if standin:
        host = urlsplit(standin if "//" in standin else f"http://{standin}").hostname or ""
        if not env.get("GITLAB_URL"):
            env["GITLAB_URL"] = f"http://{host}:{GITLAB_STANDIN_PORT}"
            env["GITLAB_API_TOKEN"] = ADMIN_TOKEN
            say(f"GITLAB_URL is not set: callers are checked against the GitLab STAND-IN at {env['GITLAB_URL']} "
                "(fixed demo users and projects; not a real GitLab). Demo user 'alice', token: glpat-alice-demo-token")
            real_keys = [key for key in PROVIDERS if key_is_set(env, key)]
            problems += [f"{key}: refused while the GitLab stand-in vouches for callers (its demo tokens are "
                         "public): set GITLAB_URL and GITLAB_API_TOKEN to your GitLab, or unset the key"
                         for key in real_keys]
            published = env.get("PUBLISHED_ADDRESS", "127.0.0.1").strip()
            if not is_loopback_host(published):
                problems.append(f"PUBLISHED_ADDRESS: {published} refused while the GitLab stand-in vouches for "
                                "callers (its demo tokens are public): publish on 127.0.0.1, or set GITLAB_URL")
        sandbox = f"http://{host}:{PROVIDER_STANDIN_PORT}"
        for key, base_url in PROVIDERS.items():
            if not key_is_set(env, key):
                env[base_url] = f"{sandbox}/v1"
                env[SANDBOX_PROVIDER_ENV] = sandbox  # its models need no key: no warning that they have none
                say(f"{key} is not set: its models are served by the SANDBOX provider at {sandbox} "
                    "(canned, deterministic answers; not a real model)")
    for key in PROVIDERS:
        if env.get(f"{key}_SET") and not env.get(key):
            env[key] = KEY_HELD_BY_THE_WORKERS
    if env.get("LOG_DIR") == IMAGE_LOG_DIR:
        env["LOG_DIR"] = os.path.join(IMAGE_LOG_DIR, socket.gethostname())
        try:
            os.makedirs(env["LOG_DIR"], exist_ok=True)
        except OSError as error:
            problems.append(f"LOG_DIR: {IMAGE_LOG_DIR} is not writable ({error.strerror}): mount a volume there "
                            "(the root filesystem may be read-only), or set LOG_DIR= to log to stderr only")
    return problems


def wait_for_standins(env: dict[str, str]) -> None:
    """The stand-ins this container relies on accept connections (bounded: the gateway copes anyway)."""
    targets = []
    for url in (env.get("GITLAB_URL", ""), env.get(SANDBOX_PROVIDER_ENV, "")):
        parts = urlsplit(url)
        if url and parts.port in (GITLAB_STANDIN_PORT, PROVIDER_STANDIN_PORT) and url.startswith("http://"):
            targets.append((parts.hostname, parts.port))
    deadline = time.monotonic() + STANDIN_WAIT
    for host, port in targets:
        while True:
            try:
                socket.create_connection((host, port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    say(f"the stand-in at {host}:{port} does not answer yet; starting anyway")
                    return
                time.sleep(0.5)


def main(argv: list[str]) -> int:
    command = argv or ["gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"]
    env = dict(os.environ)
    problems = settle(env, command)
    if problems:
        for problem in problems:
            print(f"config error: {problem}", file=sys.stderr, flush=True)
        return 2
    if env.get("STANDIN_URL"):
        wait_for_standins(env)
    os.execvpe(command[0], command, env)
    return 127  # not reached: exec replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
