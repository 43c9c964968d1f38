"""The fingerprint that tells a retry from a different request under one Idempotency-Key."""

from __future__ import annotations

import json

from app.submission import request_fingerprint
from protocol.schema import GenerationRequest


def test_the_idempotency_fingerprint_is_of_the_validated_request() -> None:
    def fingerprint(raw: str, timeout_s: float = 600.0) -> str:
        return request_fingerprint(GenerationRequest.model_validate(json.loads(raw)), timeout_s)

    same = fingerprint('{"steps": 5, "class_label": 1}')
    assert fingerprint('{"class_label": 1, "steps": 5, "seed": null}') == same  # order, defaults
    assert fingerprint('{"class_label": 1, "steps": 6}') != same
    assert fingerprint('{"steps": 5, "class_label": 1}', timeout_s=10.0) != same
