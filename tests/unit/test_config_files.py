"""Reading config files from disk: unreadable files, YAML errors, and exiting on config errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.config import ConfigError, exit_on_config_error, load_config
from tests.unit.config_fixtures import write


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == [f"{path}: cannot read config file (No such file or directory)"]


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    type: [openai\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    [line] = info.value.problems
    assert line.startswith(f"{path}: invalid YAML at line 4 column 1: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    type: openai\n    type: generic\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == [f"{path}: invalid YAML at line 4 column 5: duplicate key 'type'"]


def test_empty_file_and_non_mapping_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path, "# nothing yet\n")), {})
    assert info.value.problems == ["models: required"]
    path = write(tmp_path, "- a\n- b\n", "list.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == [f"{path}: the top level must be a mapping, got a list"]


def test_exit_on_config_error_prints_and_exits_2() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as info:
        exit_on_config_error(["models: required", "gitlab: unknown key"], stream=out)
    assert info.value.code == 2
    assert out.getvalue() == "config error: models: required\nconfig error: gitlab: unknown key\n"
