"""Refuses request bodies over a size with a 413 before anything reads or parses them.

Pure ASGI: a declared ``Content-Length`` over the limit is refused without reading a byte;
otherwise the body is counted as its chunks arrive (chunked transfer included) and refused the
moment the count passes the limit. A body within the limit is handed on whole.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import openai_error, speaks_openai


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(message, receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(whole, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.on_reject()
        message = f"request body larger than {self.max_bytes} bytes (max_body_bytes)"
        headers = {"Connection": "close"}  # the rest of the body is not read
        response = (
            openai_error(413, message, code="request_too_large", headers=headers)
            if speaks_openai(scope)
            else JSONResponse({"detail": message}, status_code=413, headers=headers)
        )
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    pending: Message | None = first

    async def replayed() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replayed
