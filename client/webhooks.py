"""Receiving the service's webhooks: verify a delivery's Standard Webhooks signature.

This file needs nothing but the standard library: copy it into a receiver. With FastAPI::

    from client.webhooks import WebhookVerificationError, verify

    @app.post("/hooks/denoise")
    async def denoise_hook(request: Request) -> Response:
        body = await request.body()  # the raw bytes: verify before parsing or re-serialising
        try:
            event = verify(SECRET, request.headers, body)  # SECRET: the deployment's whsec_...
        except WebhookVerificationError:
            return Response(status_code=400)
        if already_seen(request.headers["webhook-id"]):  # a retry reuses the id: answer 2xx again
            return Response(status_code=204)
        handle(event["type"], event["data"])  # job.started / job.progress / job.completed
        return Response(status_code=204)

Answer 2xx quickly (within the deployment's webhook timeout, 15 s by default); anything else is
retried with backoff, the same ``webhook-id`` and body each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300  # a delivery signed longer ago than this (or this far ahead) is a replay


class WebhookVerificationError(ValueError):
    """The delivery is not signed with the secret (or not recently): do not trust its body."""


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivery's JSON body (``type``, ``timestamp``, ``data``), once its signature checks.

    Args:
        secret: the signing secret, ``whsec_`` + base64 (the deployment's ``DENOISE_WEBHOOK_SECRET``).
        headers: the request's headers (any case): ``webhook-id``, ``webhook-timestamp``,
            ``webhook-signature``.
        body: the request body exactly as received.
        tolerance_s: how far the signing time may be from ``now``.

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is outside the tolerance, or
            no ``v1`` signature matches.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        webhook_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing}") from missing
    try:
        signed_at = int(timestamp)
    except ValueError as error:
        raise WebhookVerificationError(f"webhook-timestamp {timestamp!r} is not an integer") from error
    if abs((time.time() if now is None else now) - signed_at) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp {signed_at} is outside the tolerance")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise WebhookVerificationError("the secret is not whsec_ and base64") from error
    payload = body.encode() if isinstance(body, str) else body
    digest = hmac.new(key, f"{webhook_id}.{signed_at}.".encode() + payload, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(payload)  # type: ignore[no-any-return]
    raise WebhookVerificationError("no signature matches")
