"""The error hierarchy: what travels through Redis comes back as the same error."""

from __future__ import annotations

import json

import pytest

from shared.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoWorkers,
    PayloadTooLarge,
    QueueFull,
    ServiceUnavailable,
    UpstreamAuthError,
    UpstreamError,
    UpstreamFailure,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
)


def through_redis(error: GatewayError) -> GatewayError:
    """What a worker sends and the API rebuilds: a dict, as JSON, and back."""
    return GatewayError.from_dict(json.loads(json.dumps(error.to_dict())))


ROUND_TRIPS = [
    QueueFull("Model 'm' has 5 requests waiting, its limit.", retry_after=1),
    NoWorkers("nobody home", retry_after=5),
    UpstreamRejected("messages[0].content is too long", status=422),
    UpstreamRejected("body too large for the provider", status=413),
    UpstreamRateLimited("slow down", retry_after=2.5),
    UpstreamAuthError(),
    UpstreamModelNotFound("no such upstream model"),
    UpstreamError("The provider failed after 3 attempts"),
    InvalidRequest("'n' must be a positive integer.", param="n"),
    PayloadTooLarge("too big", headers={"Connection": "close"}),
    DeadlineExceeded(),
    ServiceUnavailable("shutting down", should_retry=True),
    ModelNotFound("no model", param="model"),
    GatewayError("plain"),
]


@pytest.mark.parametrize("error", ROUND_TRIPS, ids=lambda e: f"{type(e).__name__}-{e.status}")
def test_round_trip_keeps_class_and_every_field(error: GatewayError) -> None:
    back = through_redis(error)
    assert type(back) is type(error)
    assert back.status == error.status
    assert back.code == error.code
    assert back.message == error.message
    assert back.retry_after == error.retry_after
    assert back.param == error.param
    assert back.headers == error.headers
    assert back.should_retry == error.should_retry
    assert back.openai_type == error.openai_type
    assert back.anthropic_type == error.anthropic_type
    assert back.response_headers() == error.response_headers()


def test_round_trip_of_specific_values() -> None:
    queue_full = through_redis(QueueFull("full", retry_after=1))
    assert isinstance(queue_full, QueueFull)
    assert (queue_full.status, queue_full.code, queue_full.retry_after) == (503, "queue_full", 1)

    rejected = through_redis(UpstreamRejected("bad field", status=422))
    assert isinstance(rejected, UpstreamRejected)
    assert (rejected.status, rejected.code, rejected.message) == (422, "upstream_invalid_request", "bad field")
    assert rejected.should_retry is False

    limited = through_redis(UpstreamRateLimited("slow down", retry_after=2.5))
    assert isinstance(limited, UpstreamRateLimited)
    assert (limited.status, limited.retry_after, limited.openai_type) == (429, 2.5, "rate_limit_error")
    assert limited.should_retry is False


def test_status_override_does_not_change_the_class_default() -> None:
    rejected = UpstreamRejected("x", status=422)
    assert rejected.status == 422
    assert UpstreamRejected.status == 400
    assert UpstreamRejected("y").status == 400


def test_unknown_code_round_trips_as_a_plain_gateway_error() -> None:
    data = {
        "status": 418,
        "code": "brand_new_code",
        "openai_type": "teapot_error",
        "anthropic_type": "teapot",
        "message": "I am a teapot",
        "retry_after": 3,
        "param": "kettle",
        "headers": {"X-Extra": "1"},
        "should_retry": True,
    }
    error = GatewayError.from_dict(data)
    assert type(error) is GatewayError
    assert (error.status, error.code, error.message) == (418, "brand_new_code", "I am a teapot")
    assert (error.openai_type, error.anthropic_type) == ("teapot_error", "teapot")
    assert (error.retry_after, error.param, error.headers, error.should_retry) == (3, "kettle", {"X-Extra": "1"}, True)
    # the instance carries the code; the class is untouched
    assert GatewayError.code == "internal_error"
    assert GatewayError.openai_type == "api_error"
    assert GatewayError.from_dict({"code": "internal_error"}).code == "internal_error"
    # and it round-trips again unchanged
    assert through_redis(error).to_dict() == error.to_dict()


def test_empty_dict_gives_the_default_error() -> None:
    error = GatewayError.from_dict({})
    assert type(error) is GatewayError
    assert (error.status, error.code, error.message) == (500, "internal_error", GatewayError.default_message)


def test_headers_are_copied_not_shared() -> None:
    headers = {"Connection": "close"}
    error = PayloadTooLarge("too big", headers=headers)
    headers["Connection"] = "keep-alive"
    assert error.headers == {"Connection": "close"}
    error.response_headers()["Connection"] = "changed"
    assert error.headers == {"Connection": "close"}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0.2, "1"), (1, "1"), (1.0, "1"), (1.01, "2"), (2.5, "3"), (3, "3"), (0, "1"), (59.9, "60")],
)
def test_retry_after_header_is_rounded_up_to_whole_seconds(retry_after: float, header: str) -> None:
    assert QueueFull(retry_after=retry_after).response_headers()["Retry-After"] == header


def test_no_retry_after_header_without_a_value() -> None:
    assert "Retry-After" not in QueueFull().response_headers()
    assert QueueFull().response_headers() == {}


@pytest.mark.parametrize("cls", [UpstreamFailure, UpstreamError, UpstreamAuthError, UpstreamModelNotFound,
                                 UpstreamRateLimited, UpstreamRejected])
def test_upstream_failures_tell_sdks_not_to_retry(cls: type[GatewayError]) -> None:
    assert cls("x").response_headers()["x-should-retry"] == "false"


def test_should_retry_header_only_when_set() -> None:
    assert "x-should-retry" not in InvalidRequest("x").response_headers()
    assert "x-should-retry" not in QueueFull().response_headers()
    assert ServiceUnavailable(should_retry=True).response_headers()["x-should-retry"] == "true"
    # an upstream failure can be overridden per instance
    assert UpstreamError(should_retry=True).response_headers()["x-should-retry"] == "true"
    assert UpstreamError.should_retry is False


def test_rate_limited_headers_combine() -> None:
    headers = UpstreamRateLimited("slow", retry_after=0.5, headers={"X-Foo": "bar"}).response_headers()
    assert headers == {"X-Foo": "bar", "Retry-After": "1", "x-should-retry": "false"}


def test_message_defaults_and_str() -> None:
    assert QueueFull().message == "The model's queue is full."
    assert str(QueueFull("custom")) == "custom"
    assert QueueFull("").message == QueueFull.default_message


@pytest.mark.parametrize("cls", [InvalidRequest, ModelNotFound, PayloadTooLarge, QueueFull, NoWorkers,
                                 DeadlineExceeded, UpstreamAuthError, UpstreamModelNotFound,
                                 UpstreamRateLimited, UpstreamRejected])
def test_every_code_maps_back_to_its_class(cls: type[GatewayError]) -> None:
    assert type(GatewayError.from_dict({"code": cls.code})) is cls
