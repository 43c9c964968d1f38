"""Error messages from the API's answers, retries of 429/503, and the client's surface staying
equal to the contract (``httpx.MockTransport``: no server)."""

from __future__ import annotations

from typing import get_type_hints

import httpx
import pytest

from client import (
    Conflict,
    DenoiseClient,
    NotFound,
    ProtocolError,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)
from client.cli import KNOB_OPTIONS
from client.core import Knobs
from client.errors import error_for
from protocol.schema import GenerationRequest


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", "http://x/"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {
                "loc": ["body", "steps"],
                "msg": "Input should be greater than or equal to 1",
                "type": "greater_than_equal",
                "input": 0,
            },
            "steps: steps must be between 1 and 1000; got 0",
        ),
        (
            {
                "loc": ["body", "timeout_s"],
                "msg": "Input should be greater than 0",
                "type": "greater_than",
                "input": 0,
            },
            "timeout_s: timeout_s must be above 0 and at most 86400; got 0",
        ),
        (
            {
                "loc": ["body", "sampler"],
                "msg": "Input should be 'ddpm', ...",
                "type": "literal_error",
                "input": "plms",
            },
            "sampler: sampler must be one of ddpm, ddim, dpmpp_2m, unipc, euler, euler_a; got 'plms'",
        ),
        (
            {"loc": ["body", "colour"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
            "colour: colour is not a request field; the fields are model, class_label,",
        ),
        (  # the API's own checks already word it so: kept as it is
            {
                "loc": ["body", "eta"],
                "msg": "eta is not honoured by ddpm; samplers that honour it: ddim",
                "type": "value_error",
            },
            "eta: eta is not honoured by ddpm; samplers that honour it: ddim",
        ),
        (
            {"loc": ["body", 17], "msg": "JSON decode error", "type": "json_invalid"},
            "body: JSON decode error",
        ),
    ],
)
def test_422_details_become_messages_naming_the_field_and_the_allowed_values(
    entry: dict[str, object], message: str
) -> None:
    error = error_for(answer(422, {"detail": [entry]}))
    assert isinstance(error, ValidationError)
    assert str(error).startswith(message)
    assert error.errors[0].field == message.split(":")[0]


def test_statuses_map_to_the_hierarchy() -> None:
    limited = error_for(answer(429, {"detail": "queue full"}, {"Retry-After": "3"}))
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 3.0
    unavailable = error_for(answer(503, {"detail": "queue unavailable: ConnectionError"}))
    assert isinstance(unavailable, ServiceUnavailable) and unavailable.retry_after_s is None
    assert isinstance(error_for(answer(404, {"detail": "job x not found"})), NotFound)
    assert isinstance(error_for(answer(409, {"detail": "job x already succeeded"})), Conflict)


def test_429_and_503_are_retried_with_the_same_idempotency_key_honouring_retry_after() -> None:
    seen: list[str] = []
    answers = [
        httpx.Response(429, json={"detail": "queue full"}, headers={"Retry-After": "0"}),
        httpx.Response(503, json={"detail": "no worker"}),
        httpx.Response(200, json={"detail": "not a job"}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["idempotency-key"])
        return answers[len(seen) - 1]

    retry = RetryPolicy(max_retries=2, backoff_s=0.01)
    api = DenoiseClient("http://x", transport=httpx.MockTransport(handler), retry=retry)
    with api, pytest.raises(ProtocolError, match="not a JobView"):  # the third answer is read
        api.submit(steps=3)
    assert len(seen) == 3 and len(set(seen)) == 1


def test_a_retry_after_beyond_the_cap_is_raised_at_once() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, json={"detail": "rate limit"}, headers={"Retry-After": "120"})

    api = DenoiseClient("http://x", transport=httpx.MockTransport(handler))
    with api, pytest.raises(RateLimited) as raised:
        api.models()
    assert raised.value.retry_after_s == 120 and len(calls) == 1


def test_a_refused_connection_is_retried_then_raised() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    retry = RetryPolicy(max_retries=2, backoff_s=0.01)
    api = DenoiseClient("http://x", transport=httpx.MockTransport(handler), retry=retry)
    with api, pytest.raises(TransportError, match="GET http://x/v1/samplers: ConnectError"):
        api.samplers()
    assert len(calls) == 3


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer s3cret"
        return httpx.Response(200, json=[])

    with DenoiseClient("http://x", api_key="s3cret", transport=httpx.MockTransport(handler)) as api:
        assert api.models() == []


def test_keyword_knobs_and_cli_options_cover_every_request_field() -> None:
    fields = set(GenerationRequest.model_fields)
    assert set(get_type_hints(Knobs)) == fields
    assert {option.field for option in KNOB_OPTIONS} == fields
