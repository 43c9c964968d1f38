"""The API's error hierarchy, mapped to HTTP responses in one place.

Two shapes: FastAPI's ``{"detail": ...}`` everywhere, and OpenAI's ``{"error": {"message", "type",
"param", "code"}}`` under ``OPENAI_PREFIX``, so that an OpenAI client parses every error of the
routes it calls (a 401, 413 or 429 as much as a bad parameter). There a bad parameter is a 400, as
OpenAI answers, where the native routes answer 422.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from app.openai_shapes import INSTEAD
from protocol.records import CorruptJobRecord
from protocol.resolution import RequestFieldError

OPENAI_PREFIX = "/v1/images"  # routes answering in OpenAI's shapes


class ApiError(Exception):
    status_code = 500
    code: str | None = None  # the OpenAI-shape error's ``code``

    def __init__(
        self,
        detail: str | list[dict[str, object]],
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.param = param


class JobNotFound(ApiError):
    status_code = 404
    code = "not_found"


class ModelNotFound(ApiError):
    """OpenAI routes: the model is not served (the native route answers a 422 naming ``model``)."""

    status_code = 404
    code = "model_not_found"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "service_unavailable"

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        headers = None if retry_after_s is None else {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        super().__init__(detail, headers)


class Unauthorized(ApiError):
    status_code = 401
    code = "invalid_api_key"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class TooManyRequests(ApiError):
    """Rate limited, or the model's queue is at its cap; nothing was enqueued."""

    status_code = 429
    code = "rate_limit_exceeded"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail, {"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class JobUnfinished(ApiError):
    """OpenAI routes, which have no async answer: the job outlived the wait, or ended without images.

    The job exists, so a client must not resubmit: ``x-should-retry: false`` tells OpenAI's SDKs
    not to retry, and the message and ``Location`` name the job's URL.
    """

    def __init__(self, status_code: int, code: str, detail: str, job_path: str) -> None:
        super().__init__(detail, {"Location": job_path, "x-should-retry": "false"})
        self.status_code = status_code
        self.code = code


class IdempotencyKeyReused(ApiError):
    status_code = 422
    code = "idempotency_key_reused"

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            [
                {
                    "type": "idempotency_key_reused",
                    "loc": ["header", "Idempotency-Key"],
                    "msg": f"Idempotency-Key {key!r} was already used with a different request body "
                    f"(job {job_id}); send a new key for a new request",
                    "input": key,
                }
            ],
            param="Idempotency-Key",
        )


def field_error_detail(error: RequestFieldError) -> list[dict[str, object]]:
    """The same shape FastAPI gives schema errors, so clients parse one format."""
    return [{"type": "value_error", "loc": ["body", error.field], "msg": error.message, "input": None}]


# ------------------------------------------------------------------------ OpenAI's shape
class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error body, as its SDKs parse it."""

    error: OpenAIErrorDetail


def speaks_openai(scope: Scope) -> bool:
    """Whether the request is for a route that answers in OpenAI's shapes (behind any root path)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def _openai_type(status_code: int) -> str:
    if status_code >= 500:
        return "server_error"
    return {401: "authentication_error", 429: "rate_limit_error"}.get(status_code, "invalid_request_error")


def openai_error(
    status_code: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape; a 422 becomes OpenAI's 400 for an invalid request."""
    status_code = 400 if status_code == 422 else status_code
    body = OpenAIError(
        error=OpenAIErrorDetail(message=message, type=_openai_type(status_code), param=param, code=code)
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)


def _validation_param(loc: Sequence[Any]) -> str | None:
    """``("body", "size")`` -> ``size``; ``("header", "Idempotency-Key")`` -> the header's name."""
    names = [str(part) for part in loc[1:] if isinstance(part, str)]
    return ".".join(names) or None


def openai_validation_error(error: RequestValidationError) -> JSONResponse:
    """The first schema error, naming its parameter, as OpenAI reports one error at a time."""
    errors = list(error.errors())
    first = errors[0] if errors else {"type": "value_error", "loc": ("body",), "msg": "invalid request"}
    param = _validation_param(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        message, code = f"Unknown parameter: '{param}'.", "unknown_parameter"
        if param in INSTEAD:
            message += f" Send '{INSTEAD[param]}' instead."
    elif kind == "missing":
        what = f"parameter: '{param}'." if param else "request body (a JSON object)."
        message, code = f"Missing required {what}", "missing_required_parameter"
    elif param is None:
        message, code = f"Invalid request body: {first.get('msg')}", "invalid_request_body"
    else:
        message, code = f"Invalid value for '{param}': {first.get('msg')}", "invalid_value"
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more error{'s' if len(errors) > 2 else ''} in this request)"
    return openai_error(400, message, param, code)


MAX_ECHO_DEPTH = 8  # deeper parts of an echoed input are elided
MAX_ECHO_CHARS = 1000  # longer echoed strings are cut


def json_safe(value: object, depth: int = 0) -> object:
    """``value`` as plain JSON that always encodes: what a validation error echoes is the client's
    input, which may be ``NaN``, ``1e309`` (infinity), bytes that are not UTF-8 (a body sent as
    ``text/plain``) or nested deeper than an encoder recurses. Non-finite numbers become the strings
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; bytes are decoded with replacement characters;
    parts deeper than ``MAX_ECHO_DEPTH`` become ``"..."``; anything else unknown its ``str``."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + "..."
    if depth >= MAX_ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(json_safe(key, depth + 1)): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, depth + 1) for item in value]
    return json_safe(str(value), depth + 1)


def validation_error_response(error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 body (``{"detail": [{"type", "loc", "msg", "input", "ctx"}]}``), made safe to
    encode whatever the client sent (``json_safe``); FastAPI's own handler answers a 500 for a
    ``NaN`` it echoes."""
    return JSONResponse({"detail": json_safe(list(error.errors()))}, status_code=422)


def _message(detail: str | list[dict[str, object]]) -> str:
    if isinstance(detail, str):
        return detail
    return "; ".join(str(item.get("msg", item)) for item in detail)


# ---------------------------------------------------------------------------- handlers
HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route serves at the request's path. Each method is put to every route, as
    FastAPI keeps included routers as nested routes that tell only whether they match."""
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        if speaks_openai(request.scope):
            return openai_error(
                error.status_code, _message(error.detail), error.param, error.code, error.headers
            )
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(CorruptJobRecord)
    async def _corrupt_record(request: Request, error: CorruptJobRecord) -> JSONResponse:
        # a job hash that is not the contract's JSON: never decoded otherwise, never guessed at
        if speaks_openai(request.scope):
            return openai_error(500, str(error), code="corrupt_job_record")
        return JSONResponse({"detail": str(error)}, status_code=500)

    @app.exception_handler(RequestFieldError)
    async def _field_error(request: Request, error: RequestFieldError) -> JSONResponse:
        if speaks_openai(request.scope):
            status = 413 if error.status_code == 413 else 400
            code = getattr(error, "code", "invalid_value")  # the edits form's refusals carry their own
            return openai_error(status, error.message, error.field or None, code)
        return JSONResponse({"detail": field_error_detail(error)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> Response:
        if speaks_openai(request.scope):
            return openai_validation_error(error)
        return validation_error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 405:
            # Starlette names only the methods of the first route on the path; list them all
            error.headers = {
                **(error.headers or {}),
                "Allow": ", ".join(_allowed_methods(app, request.scope)),
            }
        if speaks_openai(request.scope):
            return openai_error(error.status_code, str(error.detail), headers=dict(error.headers or {}))
        return await http_exception_handler(request, error)

    @app.exception_handler(RedisError)
    async def _redis_error(request: Request, error: RedisError) -> JSONResponse:
        message = f"queue unavailable: {type(error).__name__}"
        if speaks_openai(request.scope):
            return openai_error(503, message, code="service_unavailable", headers={"Retry-After": "1"})
        return JSONResponse({"detail": message}, status_code=503, headers={"Retry-After": "1"})
