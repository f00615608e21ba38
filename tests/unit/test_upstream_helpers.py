"""One upstream call's helpers: Retry-After, error messages, cancellation errors."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
import requests
from requests.structures import CaseInsensitiveDict

import workers.upstream as upstream
from shared.errors import (
    DeadlineExceeded,
    RequestCancelled,
)
from workers.cancel import CLIENT_GONE, CancelScope
from workers.upstream import (
    cancelled_error,
    error_message_from,
    retry_after_seconds,
)

SECRET = "sk-secret-value"


def response_with(headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    response.headers = CaseInsensitiveDict(headers)
    return response


# -- retry_after_seconds ----------------------------------------------------------

def test_retry_after_ms_is_read_in_milliseconds() -> None:
    assert retry_after_seconds(response_with({"retry-after-ms": "1500"})) == 1.5


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds(response_with({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25


def test_bad_retry_after_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds(response_with({"retry-after-ms": "soon", "Retry-After": "4"})) == 4.0


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), ("0", 0.0), ("2.5", 2.5), ("-3", 0.0)])
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(response_with({"Retry-After": value})) == seconds


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert retry_after_seconds(response_with({"retry-after": "3"})) == 3.0


def test_retry_after_as_an_http_date() -> None:
    value = email.utils.formatdate(time.time() + 5, usegmt=True)  # whole seconds: 4 < wait <= 5
    seconds = retry_after_seconds(response_with({"Retry-After": value}))
    assert seconds is not None
    assert 3.5 <= seconds <= 5.5


def test_retry_after_date_in_the_past_is_zero() -> None:
    value = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after_seconds(response_with({"Retry-After": value})) == 0.0


@pytest.mark.parametrize("value", ["soon", "tomorrow-ish", "Mon, 99 Foo 2020"])
def test_retry_after_garbage_is_none(value: str) -> None:
    assert retry_after_seconds(response_with({"Retry-After": value})) is None


def test_no_retry_after_is_none() -> None:
    assert retry_after_seconds(response_with({})) is None
    assert retry_after_seconds(response_with({"Retry-After": ""})) is None


# -- error_message_from --------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, "Incorrect API key"),
        ({"error": {"type": "overloaded_error"}}, "overloaded_error"),
        ({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}},
         "max_tokens: too big"),
        ({"error": "model 'llama9' not found, try pulling it first"}, "model 'llama9' not found, try pulling it first"),
        ({"detail": "Not Found"}, "Not Found"),
        ({"message": "Internal Server Error"}, "Internal Server Error"),
        ({}, ""),
        (None, ""),
        ([], ""),
    ],
)
def test_error_message_shapes(data, message: str) -> None:
    assert error_message_from(data) == message


def test_error_message_from_a_list_is_its_json() -> None:
    data = [{"loc": ["body", "messages"], "msg": "field required"}]
    assert json.loads(error_message_from(data)) == data


def test_error_message_from_a_fastapi_validation_detail_is_its_json() -> None:
    data = {"detail": [{"loc": ["body", "model"], "msg": "field required"}]}
    assert json.loads(error_message_from(data)) == data


def test_error_message_from_a_large_body_is_cut() -> None:
    data = [{"x": "y" * 2000}]
    assert len(error_message_from(data)) == upstream.MAX_MESSAGE


def test_cancelled_error_by_reason() -> None:
    scope = CancelScope("j")
    scope.cancel(CLIENT_GONE)
    assert isinstance(cancelled_error(scope), RequestCancelled)
    shutdown = CancelScope("j")
    shutdown.cancel("shutdown")
    assert cancelled_error(shutdown).status == 503
    deadline = CancelScope("j")
    deadline.cancel("deadline")
    assert isinstance(cancelled_error(deadline), DeadlineExceeded)
