"""The errors ``openapi.yaml`` documents are the README's error table and the gateway's own
error classes: every status and code in one is in the others."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from shared import errors

ROOT = Path(__file__).resolve().parents[2]
NEVER_SENT = {"internal_error", "client_closed_request", "forbidden"}  # 500 is a bug; 499 has no reader


@pytest.fixture(scope="module")
def schemas() -> dict:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())["components"]["schemas"]


def documented_codes(schemas: dict) -> dict[int, set[str]]:
    """status -> the OpenAI-format codes the document allows at that status."""
    codes: dict[int, set[str]] = {}
    for name, schema in schemas.items():
        found = re.fullmatch(r"(?:OpenAIError|ConnectionError)(\d{3})", name)
        if found:
            code = schema["allOf"][1]["properties"]["error"]["properties"]["code"]
            codes.setdefault(int(found.group(1)), set()).update(code.get("enum") or [code["const"]])
    return codes


def anthropic_types(schemas: dict, status: int) -> set[str]:
    kind = schemas[f"AnthropicError{status}"]["allOf"][1]["properties"]["error"]["properties"]["type"]
    return set(kind.get("enum") or [kind["const"]])


def readme_rows() -> list[tuple[set[int], set[str]]]:
    """(statuses, codes) of each row of the README's error table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| status | `code` | when |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        status, code = line.split("|")[1:3]
        rows.append(({int(s) for s in re.findall(r"\d{3}", status)}, set(re.findall(r"`([a-z_]+)`", code))))
    return rows


def test_every_error_of_the_readme_is_documented(schemas) -> None:
    codes = documented_codes(schemas)
    for statuses, row_codes in readme_rows():
        for code in row_codes:
            assert any(code in codes.get(status, ()) for status in statuses), (statuses, code)


def test_every_documented_error_is_in_the_readme(schemas) -> None:
    rows = readme_rows()
    for status, codes in documented_codes(schemas).items():
        for code in codes:
            assert any(status in statuses and code in row_codes for statuses, row_codes in rows), (status, code)


def error_classes() -> list[type[errors.GatewayError]]:
    pending, found = [errors.GatewayError], []
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__ == errors.__name__ and cls.code not in NEVER_SENT]


def test_every_error_the_gateway_sends_is_documented_in_both_formats(schemas) -> None:
    codes = documented_codes(schemas)
    classes = error_classes()
    assert len(classes) > 20
    for cls in classes:
        assert cls.code in codes.get(cls.status, ()), (cls.__name__, cls.status, cls.code)
        assert cls.anthropic_type in anthropic_types(schemas, cls.status), (cls.__name__, cls.anthropic_type)
