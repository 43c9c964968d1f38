"""The body-size middleware, driven in process through its ASGI interface."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from app.body_limit import BodySizeLimit
from app.init_image import INIT_IMAGE_PATHS
from app.settings import ApiSettings

LIMIT = 1024


def run(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], drain_bytes: int = 16 * 1024 * 1024
) -> tuple[int, bytes | None, int]:
    """(status sent, body the app saw or None if it was never called, chunks read before the answer).

    A refused body's rest is read after the answer (up to ``drain_bytes``), and only then is the
    answer completed.
    """
    seen: list[bytes] = []
    reads = 0
    reads_at_answer: int | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        body = chunks[reads - 1]
        return {"type": "http.request", "body": body, "more_body": reads < len(chunks)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        nonlocal reads_at_answer
        if message["type"] == "http.response.start":
            reads_at_answer = reads
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/generations", "headers": headers}
    rejected: list[int] = []
    middleware = BodySizeLimit(
        app, LIMIT, drain_bytes=drain_bytes, on_reject=lambda reason: rejected.append(reason)
    )
    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    assert (status == 413) == (rejected == ["body_too_large"])
    assert sent[-1].get("more_body", False) is False  # the answer is completed
    if status == 413:  # the rest was drained, up to the bound
        drained = sum(len(chunk) for chunk in chunks[reads_at_answer or 0 : reads])
        assert reads == len(chunks) or drained > drain_bytes
    assert reads_at_answer is not None
    return status, (seen[0] if seen else None), reads_at_answer


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    assert run([(b"content-length", b"10000000")], [b"x" * 10]) == (413, None, 0)


def test_a_chunked_body_is_refused_once_its_count_passes_the_limit() -> None:
    chunks = [b"x" * 400] * 100  # 40 kB in chunks, no length declared
    status, seen, reads = run([(b"transfer-encoding", b"chunked")], chunks)
    assert (status, seen, reads) == (413, None, 3)  # 1,200 bytes read: refused at the third chunk


def test_the_drain_of_a_refused_body_stops_at_its_bound() -> None:
    chunks = [b"x" * 400] * 100
    assert run([(b"content-length", b"40000")], chunks, drain_bytes=2000)[0] == 413


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    chunks = [b"a" * 500, b"b" * 524]
    assert run([(b"transfer-encoding", b"chunked")], chunks) == (200, b"a" * 500 + b"b" * 524, 2)
    assert run([(b"content-length", b"1024")], [b"c" * 1024]) == (200, b"c" * 1024, 1)


def test_an_image_within_its_limit_always_fits_in_an_image_routes_body() -> None:
    assert "/v1/images/edits" in INIT_IMAGE_PATHS
    ApiSettings()  # 2 MiB images (2.7 MiB in base64) in 4 MiB bodies
    ApiSettings(max_init_image_bytes=3 * 1024 * 1024, max_image_body_bytes=5 * 1024 * 1024)
    with pytest.raises(ValidationError, match=r"max_image_body_bytes \(4194304\) must be at least 4259840"):
        ApiSettings(max_init_image_bytes=3 * 1024 * 1024)
