"""``GET /`` and ``HEAD /``: 200 for clients that check they can reach their base URL.

Claude Code may send ``HEAD /`` as a connectivity check. No credential is needed and
nothing is said: no name, version or configuration of the deployment.
"""

from __future__ import annotations


class Root:
    authenticate = False
    access_log = False  # a probe, like /health: no access record, no request metrics

    def on_get(self, req, resp) -> None:
        resp.media = {}

    def on_head(self, req, resp) -> None:
        resp.content_length = 0
