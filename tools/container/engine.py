"""A Docker engine with Compose v2 for ``make test-container``: the one that answers, or one
provisioned from Debian's packages where this process may (root, apt).

Provisioning follows what was measured on these machines (``NOTES.md``, "Containers"): Debian
12's ``docker.io`` (engine 20.10, containerd, runc) with ``iptables`` and ``debootstrap``; the
daemon started without systemd; Compose v2 and buildx taken from Debian 13's ``docker-compose``
and ``docker-buildx`` packages through a separate apt source list (Debian 12's ``docker-compose``
is 1.29, which refuses ``env_file: {path, required}``), so the host's own apt state is untouched.
Downloaded packages are kept under ``.cache/container/`` for the next run on the same machine.
A daemon started here is stopped by ``Engine.stop``, by its PID.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "container"
MIN_COMPOSE = (2, 24)  # env_file's {path, required} form and top-level `name:`
ENGINE_PACKAGES = ["docker.io", "iptables", "debootstrap"]
COMPOSE_PACKAGES = ["docker-compose", "docker-buildx"]  # Debian 13's carry Compose v2 and buildx
PLUGIN_DIR = Path("/usr/local/lib/docker/cli-plugins")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class NoEngine(RuntimeError):
    """No engine answers and none can be provisioned here; the message says what to do."""


def say(message: str) -> None:
    print(f"[container] {message}", flush=True)


def run(command: list[str], *, timeout: float = 600, check: bool = True, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and result.returncode != 0:
        raise NoEngine(f"{' '.join(command[:4])}... failed ({result.returncode}):\n"
                       f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def server_version() -> str | None:
    """The engine's version if one answers the ``docker`` CLI, else None."""
    if not shutil.which("docker"):
        return None
    try:
        result = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and version else None


def compose_version() -> tuple[int, ...] | None:
    if not shutil.which("docker"):
        return None
    result = run(["docker", "compose", "version", "--short"], timeout=30, check=False)
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", result.stdout) if result.returncode == 0 else None
    return tuple(int(part) for part in match.groups()) if match else None


def why_not_provisionable() -> str | None:
    if os.geteuid() != 0:
        return "provisioning one needs root"
    if not shutil.which("apt-get"):
        return "provisioning one needs Debian's apt"
    return None


@dataclass
class Engine:
    version: str
    compose: str
    process: subprocess.Popen | None = None  # the dockerd started here, if any

    def stop(self) -> None:
        """Stop the daemon this module started (by its PID); an engine found running is left alone."""
        if self.process is None or self.process.poll() is not None:
            return
        say(f"stopping the dockerd started for the tests (PID {self.process.pid})")
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        say(f"dockerd stopped in {time.monotonic() - started:.0f} s")


def ensure_engine() -> Engine:
    """An engine with Compose v2.24+, provisioning what is missing; ``NoEngine`` says why not."""
    process = None
    version = server_version()
    if version is None:
        reason = why_not_provisionable()
        if reason:
            raise NoEngine(f"no Docker engine answers (`docker info` failed) and {reason}: install Docker "
                           "Engine with Compose v2.24+, or run `make test-container` as root on Debian")
        if not shutil.which("dockerd"):
            install_engine_packages()
        version = server_version()  # a package's scripts may have started one
        if version is None:
            process = start_dockerd()
            version = server_version()
    compose = compose_version()
    if compose is None or compose < MIN_COMPOSE:
        reason = why_not_provisionable()
        if reason:
            found = ".".join(map(str, compose)) if compose else "none"
            raise NoEngine(f"Docker Compose v{'.'.join(map(str, MIN_COMPOSE))}+ is needed (found: {found}) and "
                           f"{reason}: install the docker-compose-plugin")
        install_compose_plugin()
        compose = compose_version()
        if compose is None or compose < MIN_COMPOSE:
            raise NoEngine(f"Compose from Debian 13 did not install as a CLI plugin (found {compose})")
    engine = Engine(version, ".".join(map(str, compose)), process)
    say(f"Docker engine {engine.version}, Compose {engine.compose}"
        + (f" (dockerd started here, PID {process.pid})" if process else ""))
    return engine


def apt_env() -> dict:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def install_engine_packages() -> None:
    archives = CACHE / "apt"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", f"Dir::Cache::Archives={archives}",
               "-o", "DPkg::Lock::Timeout=300", *ENGINE_PACKAGES]
    say(f"installing {', '.join(ENGINE_PACKAGES)} from Debian's registry")
    started = time.monotonic()
    if run(command, check=False, env=apt_env()).returncode != 0:
        run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"], env=apt_env())  # lists missing or stale
        run(command, env=apt_env())
    say(f"installed in {time.monotonic() - started:.0f} s")


def raise_open_files_limit() -> None:
    # Containers inherit the daemon's limit; the slow-client test holds hundreds of connections.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_dockerd() -> subprocess.Popen:
    CACHE.mkdir(parents=True, exist_ok=True)
    log_path = CACHE / "dockerd.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=raise_open_files_limit)
    say(f"started dockerd (PID {process.pid}, log {log_path})")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NoEngine(f"dockerd exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
        if server_version():
            return process
        time.sleep(0.5)
    process.terminate()
    raise NoEngine(f"dockerd did not answer within 60 s:\n{log_path.read_text()[-2000:]}")


def debian_mirror() -> str:
    """The host's Debian mirror (its apt sources), so the same one serves every download here."""
    candidates = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0]
            candidates += re.findall(r"(https?://\S+/debian)/?(?:\s|$)", line)
    return candidates[0] if candidates else DEFAULT_MIRROR


def install_compose_plugin() -> None:
    """Compose v2 and buildx from Debian 13's packages, unpacked into the CLI's plugin directory."""
    work = CACHE / "trixie"
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not all(list(debs.glob(f"{name}_*.deb")) for name in COMPOSE_PACKAGES):
        (work / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        sources = work / "sources.list"
        sources.write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {debian_mirror()} "
                           "trixie main\n")
        # Only this source list, these lists and this cache: the host's apt state is untouched.
        options = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/nonexistent",
                   "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
                   "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
        say("downloading Compose v2 and buildx from Debian 13 (trixie)")
        run(["apt-get", "-q", *options, "update"], env=apt_env())
        run(["apt-get", "-q", *options, "download", *COMPOSE_PACKAGES], env=apt_env(), cwd=debs)
    unpacked = work / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    for deb in debs.glob("*.deb"):
        run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
    for plugin in ("docker-compose", "docker-buildx"):
        found = list(unpacked.glob(f"usr/**/cli-plugins/{plugin}"))
        if not found:
            raise NoEngine(f"{plugin} is not in Debian 13's package where expected")
        shutil.copy2(found[0], PLUGIN_DIR / plugin)
    say(f"installed the Compose and buildx CLI plugins into {PLUGIN_DIR}")
