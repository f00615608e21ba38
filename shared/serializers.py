"""How RQ jobs and their results are written in Redis: JSON, never pickle.

orjson writes and reads standard JSON several times faster than the standard
library; a job carries the whole prompt, so that is most of the serialising a
request costs. What it writes is what RQ's own ``JSONSerializer`` reads, so
``rq info -S json`` and rq-dashboard (``-j``) see the same jobs.

Importing this module changes nothing in RQ; what the gateway's processes change
in RQ is in ``shared.plumbing.rq_patches``, installed by their entry points.
"""

from __future__ import annotations

from typing import Any

import orjson


class JobSerializer:
    @staticmethod
    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)
