"""Behaviour is pinned: fixed requests give the same PNG bytes as when they were recorded
(``tests/golden``), in-process and through HTTP + Redis + the worker process."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest

from tests.golden.record import load_models, png_hashes
from tests.golden.requests import GOLDEN_REQUESTS, load_hashes, request_key

EXPECTED = load_hashes()


def test_every_golden_request_has_recorded_hashes() -> None:
    assert sorted(EXPECTED) == sorted(request_key(r) for r in GOLDEN_REQUESTS)
    for request in GOLDEN_REQUESTS:
        assert len(EXPECTED[request_key(request)]) == request.get("num_images", 1)


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    return load_models()


@pytest.mark.parametrize("request_body", GOLDEN_REQUESTS, ids=request_key)
def test_in_process_png_bytes_match_the_recording(request_body, models) -> None:  # type: ignore[no-untyped-def]
    assert png_hashes(request_body, models) == EXPECTED[request_key(request_body)]


def test_service_png_bytes_match_the_recording(
    client: httpx.Client, gauss_worker_process: dict[str, str]
) -> None:
    mismatched = []
    for request_body in GOLDEN_REQUESTS:
        response = client.post("/v1/generations", json=request_body)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "succeeded", body
        hashes = [
            hashlib.sha256(base64.b64decode(image["png_base64"])).hexdigest() for image in body["images"]
        ]
        if hashes != EXPECTED[request_key(request_body)]:
            mismatched.append(request_key(request_body))
    assert not mismatched, f"{len(mismatched)} requests changed their PNG bytes: {mismatched}"
