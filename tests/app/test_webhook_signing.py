"""Webhook signatures: the server's signer matches the Standard Webhooks reference vector, and the
receiver's ``client.webhooks.verify`` accepts exactly what it signs (rotation, tampering, replays).
The operator's secret is checked at start-up."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from app.settings import ApiSettings
from app.webhook_signing import secret_key, signature, signed_headers
from client.webhooks import WebhookVerificationError, verify

# the reference vector of the Standard Webhooks libraries' tests
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_the_signature_is_the_reference_one() -> None:
    assert signature(secret_key(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP) == {"test": 2432232314}


def test_verify_accepts_what_is_signed_with_any_listed_secret() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"job.completed","data":{"id":"x"}}'
    headers = signed_headers([secret_key(new), secret_key(old)], "msg_1", 1_000, body)
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (old, new):  # a receiver on either side of a rotation
        assert verify(secret, {k.upper(): v for k, v in headers.items()}, body, now=1_000)["data"] == {
            "id": "x"
        }
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(new_secret(), headers, body, now=1_000)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"body": b'{"type":"job.completed","data":{"id":"y"}}'}, "no signature"),
        ({"webhook-id": "msg_2"}, "no signature"),
        ({"webhook-timestamp": "1001"}, "no signature"),
        ({"now": 1_000 + 301}, "tolerance"),  # a replay, five minutes later
        ({"now": 1_000 - 301}, "tolerance"),
        ({"webhook-signature": None}, "missing"),
        ({"webhook-timestamp": "soon"}, "integer"),
    ],
)
def test_verify_refuses_anything_else(change: dict[str, object], why: str) -> None:
    secret, body = new_secret(), b'{"type":"job.completed","data":{"id":"x"}}'
    headers: dict[str, str] = signed_headers([secret_key(secret)], "msg_1", 1_000, body)
    for name, value in change.items():
        if name.startswith("webhook-"):
            if value is None:
                del headers[name]
            else:
                headers[name] = str(value)
    sent = change.get("body", body)
    now = change.get("now", 1_000)
    with pytest.raises(WebhookVerificationError, match=why):
        verify(secret, headers, sent, now=now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with 'whsec_'"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ],
)
def test_a_bad_secret_stops_the_api_at_start(secret: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        ApiSettings(webhook_secret=secret)  # type: ignore[arg-type]


def test_secrets_are_a_comma_separated_list_and_the_lease_outlasts_an_attempt() -> None:
    first, second = new_secret(), new_secret()
    settings = ApiSettings(webhook_secret=f"{first}, {second}")  # type: ignore[arg-type]
    assert settings.webhook_keys() == [secret_key(first), secret_key(second)]
    assert ApiSettings().webhook_keys() == []
    with pytest.raises(ValidationError, match="twice webhook_timeout_s"):
        ApiSettings(webhook_timeout_s=30, webhook_lease_s=60)
