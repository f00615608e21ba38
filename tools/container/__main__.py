"""``python -m tools.container test`` (``make test-container``): a Docker engine (found, or
provisioned where this process may), the images built from this checkout, then the tests in
``tests/container`` against them; a dockerd started here is stopped at the end, by its PID.

Exit status: the tests' (0 when all pass); 2 when no engine answers and none can be provisioned,
with the reason.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tools.container.base_image import choose_bases
from tools.container.engine import ROOT, NoEngine, ensure_engine, run, say

IMAGES = ["ai-gateway:local", "ai-gateway-redis:local", "ai-gateway-proxy:local", "ai-gateway-dashboard:local"]
BUILD_TIMEOUT = 600


def build_images(bases: dict[str, str]) -> None:
    """Every image compose.yaml names (the dashboard's profile included), built as compose builds them."""
    env = {**os.environ, **bases}
    started = time.monotonic()
    run(["docker", "compose", "--project-directory", str(ROOT), "--profile", "dashboard", "build"],
        env=env, cwd=ROOT, timeout=BUILD_TIMEOUT)
    say(f"images built in {time.monotonic() - started:.0f} s")
    for image in IMAGES:
        size = run(["docker", "image", "inspect", image, "--format", "{{.Size}}"], timeout=30).stdout.strip()
        say(f"{image}: {int(size) / 1e6:.0f} MB")


def test(pytest_args: list[str]) -> int:
    started = time.monotonic()
    try:
        engine = ensure_engine()
    except NoEngine as error:
        say(f"no Docker engine: {error}")
        return 2
    try:
        bases = choose_bases()
        say("bases: " + ", ".join(f"{name}={image}" for name, image in bases.items()))
        build_images(bases)
        command = [sys.executable, "-m", "pytest", "tests/container", "-p", "no:cacheprovider", *pytest_args]
        return subprocess.run(command, cwd=ROOT, env={**os.environ, **bases}).returncode
    except NoEngine as error:
        say(str(error))
        return 2
    finally:
        engine.stop()
        say(f"make test-container took {time.monotonic() - started:.0f} s in all")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.container")
    parser.add_argument("action", choices=["test"])
    args, rest = parser.parse_known_args(argv)
    return test(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
