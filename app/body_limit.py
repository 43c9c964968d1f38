"""Refuses request bodies over a size with a 413 before anything parses them, and slow ones with a 408.

Pure ASGI: a declared ``Content-Length`` over the limit is refused without waiting for a byte;
otherwise the body is counted as its chunks arrive (chunked transfer included) and refused the
moment the count passes the limit. A body within the limit is handed on whole, provided it arrived
within ``timeout_s`` of the first read (a client trickling its body is answered 408 and cut off).

The refusal is readable by a client that writes its whole body before it reads (``urllib``, most
SDKs): closing with the body half-read makes the kernel reset the connection, and the client's
kernel drops the 413 it had received. So the 413 is sent at once, then the rest of the body is
read and dropped, up to ``drain_bytes`` and ``timeout_s`` (a lingering close, as proxies do), and
only then is the connection closed. A client that sent ``Expect: 100-continue`` sent no body, and
is not waited for.

Routes that take an init image (``image_paths``) have a larger limit of their own, and their 413
says so: the image travels inside the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import openai_error, speaks_openai


class BodySizeLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float = 30.0,
        drain_bytes: int = 16 * 1024 * 1024,
        on_reject: Callable[[str], None] = lambda reason: None,
        image_paths: Collection[str] = (),
        image_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.image_paths = frozenset(image_paths)
        self.image_max_bytes = image_max_bytes if image_max_bytes is not None else max_bytes
        self.timeout_s = timeout_s
        self.drain_bytes = drain_bytes
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
        limit = self._limit(scope)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(
                scope, receive, send, drain=b"100-continue" not in headers.get(b"expect", b""), limit=limit
            )
            return
        chunks: list[bytes] = []
        received = 0
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await self._too_slow(scope, receive, send, received)
                return
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, replay(message, receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                more = message.get("more_body", False)
                await self._refuse(scope, receive, send, drain=more, limit=limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, replay(whole, receive), send)

    def _limit(self, scope: Scope) -> int:
        path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :]
        return self.image_max_bytes if path in self.image_paths else self.max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, drain: bool, limit: int) -> None:
        self.on_reject("body_too_large")
        if limit == self.max_bytes:
            message = f"request body larger than {limit} bytes (max_body_bytes)"
        else:
            message = (
                f"request body larger than {limit} bytes (max_image_body_bytes on this route; "
                "max_body_bytes elsewhere): an init_image (or the image file of /v1/images/edits) travels "
                "in the body and must fit in it"
            )
        response = _error(scope, 413, message, "request_too_large")
        # the answer goes out whole but is left open: once it is complete the server stops reading
        # and closes, so the rest of the body is drained first
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        if drain:
            await self._drain(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drain(self, receive: Receive) -> None:
        """Reads and drops the rest of a refused body, up to ``drain_bytes`` and ``timeout_s``."""
        dropped, deadline = 0, time.monotonic() + self.timeout_s
        while dropped <= self.drain_bytes:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            dropped += len(message.get("body", b""))

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send, received: int) -> None:
        self.on_reject("body_timeout")
        message = (
            f"request body not received within {self.timeout_s:g} s ({received} bytes arrived; "
            "body_timeout_s)"
        )
        await _error(scope, 408, message, "request_timeout")(scope, receive, send)


def _error(scope: Scope, status_code: int, message: str, code: str) -> JSONResponse:
    headers = {"Connection": "close"}
    if speaks_openai(scope):
        return openai_error(status_code, message, code=code, headers=headers)
    return JSONResponse({"detail": message}, status_code=status_code, headers=headers)


def replay(first: Message, receive: Receive) -> Receive:
    pending: Message | None = first

    async def replayed() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return replayed
