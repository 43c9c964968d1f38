"""The body-size middleware, driven in process through its ASGI interface."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from app.body_limit import BodySizeLimit

LIMIT = 1024


def run(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes | None, int]:
    """(status sent, body the app saw or None if it was never called, chunks read)."""
    seen: list[bytes] = []
    reads = 0

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
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/generations", "headers": headers}
    rejected: list[int] = []
    middleware = BodySizeLimit(app, LIMIT, on_reject=lambda: rejected.append(1))
    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    assert (status == 413) == bool(rejected)
    return status, (seen[0] if seen else None), reads


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    assert run([(b"content-length", b"10000000")], [b"x" * 10]) == (413, None, 0)


def test_a_chunked_body_is_refused_once_its_count_passes_the_limit() -> None:
    chunks = [b"x" * 400] * 100  # 40 kB in chunks, no length declared
    status, seen, reads = run([(b"transfer-encoding", b"chunked")], chunks)
    assert (status, seen, reads) == (413, None, 3)  # 1,200 bytes read: refused at the third chunk


def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    chunks = [b"a" * 500, b"b" * 524]
    assert run([(b"transfer-encoding", b"chunked")], chunks) == (200, b"a" * 500 + b"b" * 524, 2)
    assert run([(b"content-length", b"1024")], [b"c" * 1024]) == (200, b"c" * 1024, 1)
