"""The ``duo:`` section's authentication keys: ``instance_ids`` and ``keys_refetch_interval``."""

from __future__ import annotations

from shared.config import DuoConfig, parse_config
from tests.unit.config_fixtures import config_with, problems


def test_without_a_duo_section_any_instance_and_a_minute_between_key_fetches() -> None:
    config = parse_config(config_with(), {})
    assert config.duo == DuoConfig()
    assert config.duo.instance_ids == ()
    assert config.duo.keys_refetch_interval == 60.0


def test_instance_ids_a_list_or_one_and_the_refetch_interval() -> None:
    config = parse_config(config_with(duo={"instance_ids": ["292c3c7c-c5d5-48ec-b4bf-f00b724ce560", "uuid-2"],
                                           "keys_refetch_interval": "5s"}), {})
    assert config.duo.instance_ids == ("292c3c7c-c5d5-48ec-b4bf-f00b724ce560", "uuid-2")
    assert config.duo.keys_refetch_interval == 5.0
    one = parse_config(config_with(duo={"instance_ids": "${INSTANCE}"}), {"INSTANCE": "uuid-3"})
    assert one.duo.instance_ids == ("uuid-3",)


def test_bad_values_are_named_by_their_path() -> None:
    found = problems(config_with(duo={"instance_ids": [], "keys_refetch_interval": "100ms", "colour": 1}))
    assert "duo.colour: unknown key" in found
    assert "duo.instance_ids: must not be an empty list" in found
    assert any(p.startswith("duo.keys_refetch_interval: must be at least 1s") for p in found), found
    assert problems(config_with(duo={"instance_ids": [""]})) == ["duo.instance_ids[0]: must not be empty"]
    assert problems(config_with(duo={"keys_refetch_interval": "2h"})) == [
        "duo.keys_refetch_interval: must be at least 1s and at most 1h, got 2h"]
    assert problems(config_with(duo=["instance_ids"])) == ["duo: must be a mapping, got a list"]
