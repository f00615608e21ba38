"""The base images the builds start from: Docker Hub's ``python:3.11-slim`` and
``debian:bookworm-slim`` where they can be had, else one local Debian 12 image made with
``debootstrap`` that stands in for both (``NOTES.md``, "Containers": no registry is reachable on
these machines, Debian's packages are).

The local base is a minimal Debian 12 with Python 3.11 and ``venv`` (what the gateway's
Dockerfile needs), apt pointed at Debian's mirror with ``policy-rc.d`` refusing service starts
(what the Redis and nginx Dockerfiles need, as in Debian's official images), and this host's extra
CA certificates, without which pip and apt over TLS cannot reach their registries from inside a
build here. Its root filesystem is kept as a tarball under ``.cache/container/``, named by a hash
of what went into it, so the next run on the machine imports it instead of bootstrapping again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tools.container.engine import CACHE, NoEngine, debian_mirror, run, say

SUITE = "bookworm"
PACKAGES = ["python3", "python3-venv", "python3-pip-whl", "python3-setuptools-whl", "ca-certificates"]
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
OFFICIAL = {"PYTHON_BASE": "python:3.11-slim", "DEBIAN_BASE": "debian:bookworm-slim"}
IMAGE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]


def extra_ca_certificates() -> list[Path]:
    return sorted(path for path in EXTRA_CA_DIR.rglob("*.crt") if path.is_file()) if EXTRA_CA_DIR.is_dir() else []


def local_base_tag() -> str:
    digest = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)} {IMAGE_ENV}".encode())
    for cert in extra_ca_certificates():
        digest.update(cert.read_bytes())
    return f"aigw-base:{SUITE}-{digest.hexdigest()[:12]}"


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], check=False, timeout=30).returncode == 0


def choose_bases() -> dict[str, str]:
    """The build arguments PYTHON_BASE and DEBIAN_BASE: set by the caller, the official images if
    present or pullable, else the local base (made if missing)."""
    if os.environ.get("PYTHON_BASE") and os.environ.get("DEBIAN_BASE"):
        return {name: os.environ[name] for name in OFFICIAL}
    if all(image_exists(image) or pulled(image) for image in OFFICIAL.values()):
        return dict(OFFICIAL)
    tag = ensure_local_base()
    return {name: tag for name in OFFICIAL}


def pulled(image: str) -> bool:
    try:
        return run(["docker", "pull", "-q", image], check=False, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_local_base() -> str:
    tag = local_base_tag()
    if image_exists(tag):
        return tag
    tarball = CACHE / f"{tag.replace(':', '-')}.tar"
    if not tarball.exists():
        build_root_filesystem(tarball)
    started = time.monotonic()
    changes = [arg for env in IMAGE_ENV for arg in ("-c", f"ENV {env}")] + ["-c", 'CMD ["/bin/bash"]']
    run(["docker", "import", *changes, str(tarball), tag])
    say(f"imported {tag} from {tarball.name} in {time.monotonic() - started:.0f} s")
    return tag


def build_root_filesystem(tarball: Path) -> None:
    if not shutil.which("debootstrap"):
        raise NoEngine("no base image can be pulled and debootstrap is not installed to make one")
    mirror = debian_mirror()
    packages = CACHE / "debootstrap"
    packages.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"no registry answers: bootstrapping a Debian {SUITE} base with Python from {mirror}")
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--cache-dir={packages}",
             SUITE, str(rootfs), mirror], timeout=900)
        security = mirror.replace("/debian", "/debian-security")
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n")
        # As Debian's official images: a package's install starts no service inside a build.
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        for cert in extra_ca_certificates():
            target = rootfs / "usr/local/share/ca-certificates" / cert.relative_to(EXTRA_CA_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cert, target)
        run(["chroot", str(rootfs), "update-ca-certificates"])
        run(["chroot", str(rootfs), "apt-get", "clean"])
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        partial = tarball.with_suffix(".partial")
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
        partial.rename(tarball)
    say(f"bootstrapped the base in {time.monotonic() - started:.0f} s ({tarball.stat().st_size >> 20} MB tarball)")
