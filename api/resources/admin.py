"""``GET /admin/queues``: per model, what ``python -m workers.inspect --json`` prints, to GitLab
administrators only.

The caller is authenticated as on every other path (no credential: 401); one GitLab does not
present as an administrator (``Identity.is_admin``) gets 403 ``admin_only``, in OpenAI's error
format, whatever else they may use. The answer names every configured model, which routes might
hide from an ordinary caller: hence administrators only.
"""

from __future__ import annotations

import redis

from shared.errors import AdminOnly
from shared.queue_report import queue_report


class AdminQueues:
    def __init__(self, redis_client: redis.Redis, model_names: list[str]):
        self.redis = redis_client
        self.model_names = model_names

    def on_get(self, req, resp) -> None:
        identity = req.context.identity
        if not identity.is_admin:
            raise AdminOnly()
        resp.media = queue_report(self.redis, self.model_names)
