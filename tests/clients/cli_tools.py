"""Claude Code and Codex CLI, pinned, installed from npm once per version, and run non-interactively
against a base URL with no traffic leaving loopback.

Install: ``tests/clients/npm/package.json`` and its ``package-lock.json`` pin both CLIs (with every
platform's native binary and its integrity hash); ``installed()`` runs ``npm ci`` with them into
``.cache/clients/<hash of the lock>/`` (git-ignored; ``AIGW_CLIENTS_CACHE`` moves it) the first time,
under a file lock, and reuses it afterwards. Only a machine without Node.js 18+ skips the tests that
need the CLIs (``require_clients()``); any other failure to install fails them.

Run: ``run_claude()`` and ``run_codex()`` give each CLI a home directory of its own (its config,
sessions and credentials stay there), a minimal environment (none of the caller's provider keys or
proxies), the gateway's base URL and a GitLab token, and ``HTTPS_PROXY`` pointing at a trap the caller
supplies (a ``tests.clients.capture.CaptureServer``), so anything a CLI tries to reach outside
loopback is recorded and refused. Each run has a timeout; on expiry its whole process group is killed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = Path(__file__).resolve().parent / "npm"
# Pinned here and in npm/package.json (a test checks they agree); latest on npm on 2026-12-07.
CLAUDE_CODE_VERSION = "2.1.332"  # @anthropic-ai/claude-code
CODEX_VERSION = "0.171.0"  # @openai/codex
MIN_NODE = (18, 0)
INSTALL_TIMEOUT = 900.0
TOKEN_ENV = "AIGW_GITLAB_TOKEN"  # the variable Codex's provider entry names in `env_key`
PROVIDER_ID = "aigw"
# Variables a run inherits from the caller; nothing else (no provider keys, proxies, CLI settings).
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
LOOPBACK = "127.0.0.1,localhost,::1"


class InstallError(RuntimeError):
    """npm could not install the pinned CLIs (a test failure, never a skip)."""


@dataclass
class Clients:
    """Paths of the installed CLIs."""

    directory: Path
    claude: list[str]
    codex: list[str]


@dataclass
class Run:
    """One finished (or killed) CLI run."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    home: Path
    workdir: Path
    env: dict = field(repr=False, default_factory=dict)

    def describe(self) -> str:
        status = "timed out" if self.timed_out else f"exit {self.returncode}"
        return (f"{self.argv[0]} ({status} after {self.seconds:.1f}s)\n--- stdout ---\n{self.stdout[-4000:]}"
                f"\n--- stderr ---\n{self.stderr[-4000:]}")

    def check(self) -> Run:
        """This run, if it exited 0; otherwise an AssertionError showing what it printed."""
        if self.timed_out or self.returncode != 0:
            raise AssertionError(self.describe())
        return self

    def result(self) -> dict:
        """Claude Code's ``--output-format json`` result object (``result``, ``is_error``, ``num_turns``...)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"not one JSON result:\n{self.describe()}") from exc

    def events(self) -> list[dict]:
        """Codex's ``--json`` events, one a line (``item.completed`` with ``command_execution`` or
        ``agent_message`` items, ``turn.completed``, ``turn.failed``...)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def items(self, kind: str) -> list[dict]:
        """The completed Codex items of one type (``agent_message``, ``command_execution``...)."""
        return [event["item"] for event in self.events()
                if event.get("type") == "item.completed" and event.get("item", {}).get("type") == kind]


# --- Node.js and the install -----------------------------------------------------------------------

def node_problem() -> str | None:
    """Why the CLIs cannot run here (no Node.js 18+), or None when they can."""
    node = shutil.which("node")
    if node is None:
        return "Node.js 18+ is needed to run the Claude Code and Codex CLIs; `node` is not on PATH"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Node.js 18+ is needed to run the Claude Code and Codex CLIs; `node --version` failed: {exc}"
    found = re.match(r"v(\d+)\.(\d+)", version)
    if not found or (int(found.group(1)), int(found.group(2))) < MIN_NODE:
        return f"Node.js 18+ is needed to run the Claude Code and Codex CLIs; found {version or 'no version'}"
    return None


def cache_root() -> Path:
    return Path(os.environ.get("AIGW_CLIENTS_CACHE") or ROOT / ".cache" / "clients")


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NPM_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def installed() -> Clients:
    """The pinned CLIs, installed with ``npm ci`` on first use (raises InstallError)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / lock_digest()
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time, however many test processes ask
        if not (target / ".installed").exists():
            _install(target)
            _prune(root, keep=target)
    return _locate(target)


def _prune(root: Path, keep: Path) -> None:
    """Remove installs of other pins (each is about 800 MB) and partial ones."""
    for child in root.iterdir():
        if child != keep and child.is_dir() and re.fullmatch(r"[0-9a-f]{16}(\.partial-\d+)?", child.name):
            shutil.rmtree(child, ignore_errors=True)


def _install(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("Node.js is installed but `npm` is not on PATH: cannot install the pinned CLIs")
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(NPM_DIR / name, staging / name)
    # npm ci installs exactly the lock (integrity checked) and this platform's native binaries; Claude
    # Code declares node >= 22 for its JavaScript wrapper, but what runs is its native binary.
    command = [npm, "ci", "--no-audit", "--no-fund", "--engine-strict=false", "--loglevel=warn"]
    try:
        done = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                              env={**os.environ, "npm_config_update_notifier": "false"})
        if done.returncode != 0:
            raise InstallError(f"`npm ci` of the pinned CLIs failed (exit {done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError(f"`npm ci` of the pinned CLIs took more than {INSTALL_TIMEOUT:.0f}s") from exc
    except InstallError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".installed").write_text(f"{CLAUDE_CODE_VERSION} {CODEX_VERSION}\n")
    staging.rename(target)


def _locate(target: Path) -> Clients:
    modules = target / "node_modules"
    claude = modules / "@anthropic-ai" / "claude-code"
    # Its postinstall replaces bin/claude.exe with the native binary; an npm that skipped install scripts
    # leaves a small placeholder, and the package's own wrapper finds the native binary instead.
    binary = claude / "bin" / "claude.exe"
    node = shutil.which("node") or "node"
    claude_argv = [str(binary)] if binary.exists() and binary.stat().st_size > 1_000_000 else [
        node, str(claude / "cli-wrapper.cjs")]
    codex_argv = [node, str(modules / "@openai" / "codex" / "bin" / "codex.js")]
    return Clients(directory=target, claude=claude_argv, codex=codex_argv)


def require_clients() -> Clients:
    """For tests: the installed CLIs; skips (saying why) only when Node.js 18+ is missing."""
    import pytest

    problem = node_problem()
    if problem:
        pytest.skip(problem)
    return installed()


# --- running them --------------------------------------------------------------------------------

def base_env(home: Path, proxy: str | None) -> dict:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.update({"HOME": str(home), "TERM": "dumb", "NO_COLOR": "1", "CI": "1"})
    if proxy:  # anything not loopback goes to the trap, which records and refuses it
        env.update({"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "ALL_PROXY": proxy, "https_proxy": proxy,
                    "http_proxy": proxy, "all_proxy": proxy, "NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK})
    return env


def _execute(argv: list[str], env: dict, home: Path, workdir: Path, timeout: float) -> Run:
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process.pid)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        _kill_group(process.pid)  # what the CLI left running (a tool's shell, say) goes with it
    return Run(argv=argv, returncode=process.returncode, stdout=stdout, stderr=stderr,
               seconds=time.monotonic() - started, timed_out=timed_out, home=home, workdir=workdir, env=env)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _dirs(home: Path, workdir: Path | None) -> tuple[Path, Path]:
    home.mkdir(parents=True, exist_ok=True)
    workdir = workdir or home / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return home, workdir


def version(clients: Clients, which: str, home: Path, timeout: float = 60) -> Run:
    """``claude --version`` or ``codex --version``."""
    home, workdir = _dirs(home, None)
    argv = (clients.claude if which == "claude" else clients.codex) + ["--version"]
    env = base_env(home, None)
    if which == "codex":
        env["CODEX_HOME"] = str(home / ".codex")
        (home / ".codex").mkdir(exist_ok=True)
    return _execute(argv, env, home, workdir, timeout)


def run_claude(clients: Clients, prompt: str, *, base_url: str, token: str, model: str | None, home: Path,
               workdir: Path | None = None, proxy: str | None = None, allowed_tools: tuple[str, ...] = ("Bash",),
               output_format: str = "json", extra_args: tuple[str, ...] = (), extra_env: dict | None = None,
               timeout: float = 120) -> Run:
    """``claude -p PROMPT`` against ``base_url`` (the gateway's root, no /v1) as the GitLab ``token``.

    ``model`` sets ANTHROPIC_MODEL, and also the model Claude Code picks for its small background
    requests, so every request names a model the gateway serves; None leaves Claude Code's defaults.
    ``allowed_tools`` run without asking (``--allowedTools``; --dangerously-skip-permissions is refused
    as root, which CI runners often are). ``output_format`` json prints one result object.
    """
    home, workdir = _dirs(home, workdir)
    env = base_env(home, proxy)
    env.update({
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,  # sent as Authorization: Bearer, which the gateway checks with GitLab
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, error reports, update checks
    })
    if model:
        env.update({"ANTHROPIC_MODEL": model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
                    "ANTHROPIC_DEFAULT_SONNET_MODEL": model, "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
                    "ANTHROPIC_SMALL_FAST_MODEL": model})
    env.update(extra_env or {})
    argv = [*clients.claude, "-p", prompt, "--output-format", output_format]
    if allowed_tools:
        argv += ["--allowedTools", ",".join(allowed_tools)]
    argv += list(extra_args)
    return _execute(argv, env, home, workdir, timeout)


def codex_config(base_url: str, model: str | None, top_level: str = "", provider: str = "") -> str:
    """A ``config.toml`` whose provider is the gateway (``base_url`` ends in /v1). ``model`` None
    leaves Codex's default. ``top_level`` adds root keys, ``provider`` keys of the provider's table."""
    root = [f'model = "{model}"' if model else "", f'model_provider = "{PROVIDER_ID}"', 'approval_policy = "never"',
            'sandbox_mode = "danger-full-access"', top_level]
    tables = [
        # Off, or Codex reaches github.com and chatgpt.com at start (curated plugins: git ls-remote,
        # api.github.com, then chatgpt.com/backend-api/plugins/export/curated) and exports OpenTelemetry
        # metrics to ab.chatgpt.com/otlp/v1/metrics: seen through the capture proxy with 0.171.0.
        "[features]", "plugins = false",
        "[analytics]", "enabled = false",
        f"[model_providers.{PROVIDER_ID}]", 'name = "AI gateway for GitLab"', f'base_url = "{base_url}"',
        f'env_key = "{TOKEN_ENV}"', 'wire_api = "responses"', provider,
    ]
    return "\n".join(line for line in root + tables if line) + "\n"


def run_codex(clients: Clients, prompt: str, *, base_url: str, token: str, model: str | None, home: Path,
              workdir: Path | None = None, proxy: str | None = None, json_events: bool = True,
              extra_config: str = "", provider_config: str = "", extra_args: tuple[str, ...] = (),
              extra_env: dict | None = None, timeout: float = 120) -> Run:
    """``codex exec PROMPT`` against ``base_url`` (the gateway's /v1) as the GitLab ``token``.

    Its sandbox is off and it never asks for approval, so a scripted shell command runs unattended;
    ``json_events`` prints its events as JSON lines (``--json``). ``extra_config`` adds top-level
    keys to config.toml, ``provider_config`` keys to the provider's table.
    """
    home, workdir = _dirs(home, workdir)
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url, model, extra_config, provider_config))
    env = base_env(home, proxy)
    env.update({"CODEX_HOME": str(codex_home), TOKEN_ENV: token})
    env.update(extra_env or {})
    # --strict-config: a config key this version no longer knows fails the run instead of being ignored.
    argv = [*clients.codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "--strict-config", "--color", "never", "-C", str(workdir)]
    if json_events:
        argv.append("--json")
    argv += [*extra_args, prompt]
    return _execute(argv, env, home, workdir, timeout)
