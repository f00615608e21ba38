"""Sizes in the config file (``jobs.max_unread_reply_bytes``): parsing, formatting, validation."""

from __future__ import annotations

import pytest

from shared.config import JobsConfig, format_summary, parse_config
from shared.sizes import format_size, parse_size
from tests.unit.config_fixtures import config_with, problems


@pytest.mark.parametrize(("value", "size"), [
    (0, 0), (65536, 65536), ("65536", 65536), ("100B", 100), ("512KiB", 524288), ("1MiB", 1048576),
    ("1mib", 1048576), ("1.5KiB", 1536), (" 2 MiB ", 2097152), ("1GiB", 1073741824), (".5MiB", 524288),
])
def test_parse_size_accepts(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [
    True, False, -1, "-1KiB", "", "big", "1MB", "1KB", "1M", "1k", "1.5", "1.5B", "MiB", "1e6", None, 1.5, [1],
])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"^must be a size such as 65536, 512KiB, 1MiB$"):
        parse_size(value)


@pytest.mark.parametrize(("size", "text"), [
    (0, "0B"), (100, "100B"), (1000, "1000B"), (1024, "1KiB"), (1536, "1.5KiB"), (1025, "1025B"),
    (1048576, "1MiB"), (3 * 1048576 // 2, "1.5MiB"), (1073741824, "1GiB"), (65536, "64KiB"),
])
def test_format_size_reads_back(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_max_unread_reply_bytes_defaults_to_one_mebibyte() -> None:
    assert parse_config(config_with(), {}).jobs.max_unread_reply_bytes == 1048576 == JobsConfig().max_unread_reply_bytes


@pytest.mark.parametrize(("value", "size"), [("256KiB", 262144), (4096, 4096), ("${LIMIT}", 65536)])
def test_max_unread_reply_bytes_is_read(value: object, size: int) -> None:
    config = parse_config(config_with(jobs={"max_unread_reply_bytes": value}), {"LIMIT": "64KiB"})
    assert config.jobs.max_unread_reply_bytes == size
    assert f"max_unread_reply_bytes {format_size(size)}" in format_summary(config, "config.yaml")


@pytest.mark.parametrize(("value", "expected"), [
    ("1MB", "jobs.max_unread_reply_bytes: must be a size such as 65536, 512KiB, 1MiB"),
    ("lots", "jobs.max_unread_reply_bytes: must be a size such as 65536, 512KiB, 1MiB"),
    (True, "jobs.max_unread_reply_bytes: must be a size such as 65536, 512KiB, 1MiB"),
    (512, "jobs.max_unread_reply_bytes: must be at least 1KiB, got 512B"),
    (0, "jobs.max_unread_reply_bytes: must be at least 1KiB, got 0B"),
])
def test_max_unread_reply_bytes_is_validated(value: object, expected: str) -> None:
    assert problems(config_with(jobs={"max_unread_reply_bytes": value})) == [expected]
