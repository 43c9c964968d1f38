"""Signing webhook deliveries, following Standard Webhooks (https://www.standardwebhooks.com).

Every attempt carries three headers: ``webhook-id`` (the same for every attempt of one event: a
receiver's idempotency key), ``webhook-timestamp`` (the attempt's time, integer Unix seconds: a
receiver refuses old ones, which stops replays) and ``webhook-signature``: ``v1,`` and the
base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}`` under the secret's key, one
per configured secret, space-separated (listing the old secret beside the new one rotates it
without a gap). A secret is ``whsec_`` and the base64 of its key (24 to 64 random bytes).

The receiver's side is ``client.webhooks.verify``: stdlib only, written to be copied.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret.

    Raises:
        ValueError: not ``whsec_`` and base64, or a key shorter than 24 or longer than 64 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r} (then the base64 of its key)")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} and base64: {error}") from error
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"a webhook secret's key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}: "
            f"make one with `python -c \"import base64, os; print('whsec_' + "
            f'base64.b64encode(os.urandom(32)).decode())"`'
        )
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(keys: list[bytes], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (one signature per key)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(key, webhook_id, timestamp, body) for key in keys),
    }
