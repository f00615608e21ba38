"""Responses API responses the gateway answered, and whose they are.

One Redis hash per response id (``shared.keys.response_key``), kept for
``jobs.response_ttl``:

- ``owner``: the GitLab user id of the caller it answered. Only that user may
  read, delete or continue it: to anyone else (and for an id unknown or expired)
  it does not exist, one answer for all, so nobody learns another's ids.
- ``model`` and ``requested``: the configured model that produced it and the
  name the caller asked for (answers carry that name).
- ``kind``: ``stored`` when the gateway keeps the response itself (a model the
  Responses API is translated for), then ``data`` holds the Response object and
  the conversation a ``previous_response_id`` continues (the history it
  continued, its input items and its output items), at most
  ``jobs.max_stored_response_bytes`` of JSON; ``relayed`` when the provider
  keeps it (an ``openai`` model, or a ``generic`` one with
  ``native_responses_api``), then only its owner and model are noted, and the
  ``deployment`` that holds it (a model's ``deployments``): a
  ``previous_response_id`` continues there and nowhere else.

A request with ``store: false`` leaves nothing here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from redis import Redis

from shared.errors import NotFound
from shared.keys import response_key

log = logging.getLogger("aigw.responses")

STORED, RELAYED = "stored", "relayed"
_FIELDS = ("owner", "model", "requested", "kind", "deployment")


@dataclass(frozen=True)
class ResponseRecord:
    owner: str  # the GitLab user id of the caller it answered
    model: str  # the configured model that produced it
    requested: str  # the model name the caller asked for
    kind: str  # STORED or RELAYED
    deployment: str = ""  # RELAYED: the deployment of ``model`` whose provider holds it


@dataclass(frozen=True)
class StoredResponse:
    record: ResponseRecord
    response: dict  # the Response object, as the caller got it
    items: list[dict]  # the conversation so far: the history it continued, its input, its output


def not_found(response_id: str, param: str = "response_id") -> NotFound:
    """One answer for an id that is unknown, expired, deleted or someone else's: nothing is learnt from it."""
    return NotFound(f"No response found with id '{response_id}'.", param=param)


def owner_of(caller: dict) -> str:
    """The owner a job's or a request's caller fields name: their GitLab user id."""
    return str(caller.get("user_id") or "")


class ResponsesStore:
    def __init__(self, redis: Redis, *, ttl: float, max_bytes: int):
        self.redis = redis
        self.ttl = max(1, int(ttl))
        self.max_bytes = max_bytes

    def record(self, response_id: str, owner: str) -> ResponseRecord | None:
        """The response's record if ``owner`` owns it; None when it is someone else's, unknown or expired."""
        values = self.redis.hmget(response_key(response_id), _FIELDS)
        return _owned(values, owner)

    def load(self, response_id: str, owner: str) -> StoredResponse | None:
        """A response the gateway keeps, with its conversation, if ``owner`` owns it."""
        values = self.redis.hmget(response_key(response_id), (*_FIELDS, "data"))
        record = _owned(values[:-1], owner)
        if record is None or record.kind != STORED or values[-1] is None:
            return None
        data = orjson.loads(values[-1])
        return StoredResponse(record, data["response"], data["items"])

    def keep(self, response_id: str, record: ResponseRecord, response: dict, items: list[dict]) -> bool:
        """Keep a response the gateway produced, with its conversation; False (and nothing kept) when
        it is larger than ``jobs.max_stored_response_bytes``."""
        data = orjson.dumps({"response": response, "items": items})
        if len(data) > self.max_bytes:
            log.warning("response not stored: larger than jobs.max_stored_response_bytes",
                        extra={"response_id": response_id, "bytes": len(data), "limit": self.max_bytes})
            return False
        self._write(response_id, record, {"data": data})
        return True

    def note_relayed(self, response_id: str, record: ResponseRecord) -> None:
        """Note the owner of a response the provider keeps, so that only they may use its id."""
        self._write(response_id, record, {})

    def forget(self, response_id: str) -> None:
        self.redis.delete(response_key(response_id))

    def _write(self, response_id: str, record: ResponseRecord, extra: dict) -> None:
        key = response_key(response_id)
        pipe = self.redis.pipeline(transaction=True)  # never a record without its expiry
        pipe.delete(key)  # an id is written once; a stale one must not lend its fields
        pipe.hset(key, mapping={"owner": record.owner, "model": record.model, "requested": record.requested,
                                "kind": record.kind, **({"deployment": record.deployment} if record.deployment else {}),
                                **extra})
        pipe.expire(key, self.ttl)
        pipe.execute()


def _owned(values: list, owner: str) -> ResponseRecord | None:
    if values[0] is None or not owner or values[0].decode() != owner:
        return None
    return ResponseRecord(*(value.decode() if value is not None else "" for value in values))
