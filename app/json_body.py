"""Refuses JSON bodies that a lenient parser would accept with a silent guess, before FastAPI parses them.

Python's ``json`` keeps the last of duplicate keys (``{"steps": 1, "steps": 1000}`` is 1000 steps),
decodes a byte order mark and UTF-16 without a word, and recurses until it overflows the stack on
deep nesting. This middleware parses a JSON request body once, strictly, and answers in the route's
error shape (FastAPI's ``detail`` list, or OpenAI's under ``/v1/images``):

- not UTF-8, or starting with a byte order mark: 400 (RFC 8259: JSON is exchanged as UTF-8, BOM-less);
- a key given twice in one object: 422 naming the key;
- nested deeper than ``MAX_DEPTH``, or an integer longer than Python converts: 422.

A body that is not JSON at all goes on to FastAPI, which answers its own 422 (``json_invalid``) with
the position; so do non-finite numbers (``NaN``, ``1e309``), which the request models refuse by
field. It sits inside ``BodySizeLimit``, so the body it reads is whole and bounded.
"""

from __future__ import annotations

import json
import re
from email.message import Message as MimeMessage

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.body_limit import replay
from app.errors import openai_error, speaks_openai

MAX_DEPTH = 32  # the contract's deepest value is a list in an object: 2
BOM = b"\xef\xbb\xbf"
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyRefused(Exception):
    def __init__(self, status_code: int, kind: str, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.status_code, self.kind, self.message, self.key = status_code, kind, message, key


def parses_as_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this content type as JSON (none, ``application/json`` or
    ``application/*+json``)."""
    if not content_type:
        return True
    mime = MimeMessage()
    mime["content-type"] = content_type
    subtype = mime.get_content_subtype()
    return mime.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise BodyRefused(
                422, "duplicate_key", f"key {key!r} appears more than once in a JSON object", key
            )
        result[key] = value
    return result


def _walk(value: object) -> None:
    """Refuses nesting deeper than ``MAX_DEPTH`` and strings that are not Unicode text (a lone
    surrogate escape, ``"\\ud800"``, which nothing downstream can encode), naming the top-level
    key they are under; without recursion."""
    stack: list[tuple[object, int, str | None]] = [(value, 0, None)]
    while stack:
        item, depth, key = stack.pop()
        if depth > MAX_DEPTH:
            raise BodyRefused(422, "json_too_deep", f"JSON nested deeper than {MAX_DEPTH} levels", key)
        if isinstance(item, dict):
            for name, child in item.items():
                _check_text(name, key or name)
                stack.append((child, depth + 1, key or name))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, key) for child in item)
        elif isinstance(item, str):
            _check_text(item, key)


def _check_text(text: str, key: str | None) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BodyRefused(
            422, "string_unicode", "a string holds a lone surrogate escape (not Unicode text)", key
        ) from error


# a key followed by an integer longer than int() converts (4300 digits): names the field
_HUGE_INTEGER = re.compile(r'"([^"\\]{1,64})"\s*:\s*-?[0-9]{4000,}')


def check_json(body: bytes) -> None:
    """Raises ``BodyRefused`` for a body a strict JSON reading refuses; returns for valid JSON and
    for text that is not JSON at all (FastAPI reports where)."""
    if body.startswith(BOM):
        raise BodyRefused(400, "json_encoding", "the body starts with a byte order mark; send UTF-8 without")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyRefused(
            400, "json_encoding", f"the body is not UTF-8 (byte {error.start}); JSON is sent as UTF-8"
        ) from error
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError:
        return
    except RecursionError as error:
        raise BodyRefused(422, "json_too_deep", f"JSON nested deeper than {MAX_DEPTH} levels") from error
    except ValueError as error:  # an integer of more digits than int() converts
        huge = _HUGE_INTEGER.search(text)
        raise BodyRefused(
            422, "json_invalid", f"number refused: {error}", huge.group(1) if huge else None
        ) from error
    _walk(value)


class StrictJsonBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type")
        if not parses_as_json(content_type.decode("latin-1") if content_type else None):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                check_json(body)
            except BodyRefused as refused:
                await _refusal(scope, refused)(scope, receive, send)
                return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, replay(whole, receive), send)


def _refusal(scope: Scope, refused: BodyRefused) -> JSONResponse:
    if speaks_openai(scope):
        return openai_error(refused.status_code, refused.message, refused.key, refused.kind)
    loc = ["body", refused.key] if refused.key is not None else ["body"]
    detail = [{"type": refused.kind, "loc": loc, "msg": refused.message, "input": None}]
    return JSONResponse({"detail": detail}, status_code=refused.status_code)
