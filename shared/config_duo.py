"""The config file's ``duo:`` section: GitLab Duo Self-Hosted using this gateway as its AI gateway.

``parse_duo`` reads it for ``shared.config.parse_config``. Each concern of the section has its own
keys and its own reader returning the ``DuoConfig`` fields it owns, so a key is added to one tuple
and one reader: who may call (``AUTH_KEYS``, ``_auth_fields``; see ``api.duo_auth``) and what serves
each Duo feature.
"""

from __future__ import annotations

from typing import Any

from shared.config_parse import _Checker
from shared.config_types import DuoConfig
from shared.durations import parse_duration

AUTH_KEYS = ("instance_ids", "keys_refetch_interval")
DUO_KEYS = AUTH_KEYS


def parse_duo(c: _Checker, value: Any, known_models: set[str]) -> DuoConfig:
    """The ``duo:`` mapping (``{}`` when the file has none) as a ``DuoConfig``; problems go to ``c``."""
    node = c.mapping(value, "duo", DUO_KEYS) or {}
    return DuoConfig(**_auth_fields(c, node))


def _auth_fields(c: _Checker, node: dict) -> dict:
    instance_ids: tuple[str, ...] = ()
    if "instance_ids" in node:
        # GitLab's instance id (ApplicationSetting#uuid, the JWT's sub): a UUID, any non-empty text here.
        instance_ids = c.ids(node["instance_ids"], "duo.instance_ids") or ()
    return {
        "instance_ids": instance_ids,
        # At least a second: a flood of tokens naming unknown keys must not become a flood of GitLab calls.
        "keys_refetch_interval": c.get(node, "keys_refetch_interval", "duo", parse_duration,
                                       DuoConfig.keys_refetch_interval, lo=1.0, hi=3600.0),
    }
