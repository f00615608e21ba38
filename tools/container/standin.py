"""``python -m tools.container.standin``: the compose ``standins`` service (and the README's
``docker run`` of it): the sandbox provider on port 8000 and the GitLab stand-in on 8001, what
``make run`` starts when ``GITLAB_URL`` or a provider key is unset (``tools/run.py``). The gateway
containers point at them by ``STANDIN_URL`` (``tools/container/entrypoint.py``).

Each is served only while needed: the GitLab stand-in while ``GITLAB_URL`` is unset, the sandbox
provider while a provider key is unset (compose passes ``OPENAI_API_KEY_SET`` and
``ANTHROPIC_API_KEY_SET``, never the keys). With neither needed it says so and exits 0, which a
``restart: on-failure`` policy leaves stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from sandbox import gitlab, provider
from tools.container.entrypoint import GITLAB_STANDIN_PORT, PROVIDER_STANDIN_PORT, PROVIDERS


def needed(env: dict[str, str]) -> dict[str, bool]:
    return {
        "gitlab": not env.get("GITLAB_URL"),
        "provider": any(not (env.get(key) or env.get(f"{key}_SET")) for key in PROVIDERS),
    }


def main() -> int:
    wanted = needed(dict(os.environ))
    if not any(wanted.values()):
        print("GITLAB_URL and every provider key are set: no stand-in is needed", flush=True)
        return 0
    servers = []
    if wanted["provider"]:
        servers.append(provider.make_server("0.0.0.0", PROVIDER_STANDIN_PORT))
        print(provider.LABEL, file=sys.stderr, flush=True)
    if wanted["gitlab"]:
        servers.append(gitlab.make_server("0.0.0.0", GITLAB_STANDIN_PORT))
        print("\n".join(gitlab.demo_lines()), file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"{type(server).__name__} listening on {server.base_url}", flush=True)
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
