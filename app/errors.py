"""The API's error hierarchy, mapped to HTTP responses in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from app.resolution import RequestFieldError


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class JobNotFound(ApiError):
    status_code = 404


class ServiceUnavailable(ApiError):
    status_code = 503


def field_error_detail(error: RequestFieldError) -> list[dict[str, object]]:
    """The same shape FastAPI gives schema errors, so clients parse one format."""
    return [{"type": "value_error", "loc": ["body", error.field], "msg": error.message, "input": None}]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)

    @app.exception_handler(RequestFieldError)
    async def _field_error(_request: Request, error: RequestFieldError) -> JSONResponse:
        return JSONResponse({"detail": field_error_detail(error)}, status_code=422)

    @app.exception_handler(RedisError)
    async def _redis_error(_request: Request, error: RedisError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"queue unavailable: {type(error).__name__}"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
