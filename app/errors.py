"""The API's error hierarchy, mapped to HTTP responses in one place."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from protocol.records import CorruptJobRecord
from protocol.resolution import RequestFieldError


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: str | list[dict[str, object]], headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class JobNotFound(ApiError):
    status_code = 404


class ServiceUnavailable(ApiError):
    status_code = 503

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        headers = None if retry_after_s is None else {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        super().__init__(detail, headers)


class Unauthorized(ApiError):
    status_code = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class TooManyRequests(ApiError):
    """Rate limited, or the model's queue is at its cap; nothing was enqueued."""

    status_code = 429

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail, {"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class IdempotencyKeyReused(ApiError):
    status_code = 422

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
            ]
        )


def field_error_detail(error: RequestFieldError) -> list[dict[str, object]]:
    """The same shape FastAPI gives schema errors, so clients parse one format."""
    return [{"type": "value_error", "loc": ["body", error.field], "msg": error.message, "input": None}]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(CorruptJobRecord)
    async def _corrupt_record(_request: Request, error: CorruptJobRecord) -> JSONResponse:
        # a job hash that is not the contract's JSON: never decoded otherwise, never guessed at
        return JSONResponse({"detail": str(error)}, status_code=500)

    @app.exception_handler(RequestFieldError)
    async def _field_error(_request: Request, error: RequestFieldError) -> JSONResponse:
        return JSONResponse({"detail": field_error_detail(error)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 405:
            # Starlette names only the methods of the first route on the path; list them all
            allowed = set()
            for route in app.router.routes:
                if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
                    allowed |= route.methods or set()
            error.headers = {**(error.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return await http_exception_handler(request, error)

    @app.exception_handler(RedisError)
    async def _redis_error(_request: Request, error: RedisError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"queue unavailable: {type(error).__name__}"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
