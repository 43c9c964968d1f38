"""The client's error hierarchy, and the one place that turns an HTTP answer into it.

::

    DenoiseError
    ├── ClientError             4xx: the request is wrong; retrying it unchanged will not help
    │   ├── InvalidRequest      400, 413
    │   │   └── ValidationError 422: one FieldError per bad field, naming the allowed values
    │   ├── Unauthorized        401, 403
    │   ├── NotFound            404
    │   └── Conflict            409 (e.g. cancelling a finished job)
    ├── RateLimited             429, with ``retry_after_s``
    ├── ServerError             5xx
    │   └── ServiceUnavailable  503, with ``retry_after_s``
    ├── TransportError          the API could not be reached, or the connection dropped
    ├── ProtocolError           the API answered something that is not the contract
    ├── JobFailed               the job ended ``failed`` or ``cancelled`` (``generate`` only)
    └── WaitTimeout             ``wait`` gave up before the job finished

The API's 422 bodies are ``{"detail": [{"loc": ["body", field], "msg": ..., "type": ...}]}``: the
messages of the API's own checks already name the field and its allowed values ("steps must be
between 1 and 200; got 500"); pydantic's schema messages ("Input should be less than or equal to
1000") are rewritten here in the same words, with the bounds and choices read from the shared
``GenerationRequest``.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import annotated_types
import httpx

from protocol.schema import GenerationRequest, JobView


class DenoiseError(Exception):
    """Anything the client raises; ``status_code`` is the HTTP status when there was an answer."""

    status_code: int | None = None

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class ClientError(DenoiseError):
    """A 4xx other than 429: the request itself is wrong."""


class InvalidRequest(ClientError):
    """400 (not JSON text) or 413 (body over the deployment's limit)."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a 422's ``detail``: where (``body``'s field, or a header) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(InvalidRequest):
    """422: every bad field, each naming the field and what it may be."""

    status_code = 422

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(map(str, errors)) or "the request is invalid")


class Unauthorized(ClientError):
    """401 or 403: no API key, or a wrong one."""


class NotFound(ClientError):
    """404: no such job (finished jobs expire), or no such endpoint."""


class Conflict(ClientError):
    """409: e.g. a cancel of a job that has already finished."""


class RateLimited(DenoiseError):
    """429: the caller's rate limit or the model's queue cap; nothing was enqueued."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerError(DenoiseError):
    """5xx: the service failed; the request may be fine."""


class ServiceUnavailable(ServerError):
    """503: Redis is unreachable or no worker has registered yet."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TransportError(DenoiseError):
    """The API could not be reached, or the connection failed mid-answer.

    ``retryable``: the failure is one that asking again may get past (refused, reset, dropped).
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProtocolError(DenoiseError):
    """An answer that is not what the contract says (not JSON, a malformed event)."""


class JobFailed(DenoiseError):
    """The job finished without images: ``failed`` (with the worker's error) or ``cancelled``."""

    def __init__(self, job: JobView) -> None:
        self.job = job
        why = f": {job.error.type}: {job.error.message}" if job.error else ""
        super().__init__(f"job {job.id} {job.status}{why}")


class WaitTimeout(DenoiseError):
    """The job had not finished when ``wait`` gave up; it keeps running (cancel it if unwanted)."""

    def __init__(self, job: JobView, timeout_s: float) -> None:
        self.job = job
        super().__init__(
            f"job {job.id} still {job.status} (step {job.progress.step} of {job.progress.total}) "
            f"after {timeout_s:g} s"
        )


# ------------------------------------------------------------------ from an answer to an error
def retry_after_s(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds or an HTTP date), None when absent."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return None if when is None else max(0.0, when.timestamp() - time.time())


def error_for(response: httpx.Response) -> DenoiseError:
    """The error for a non-2xx answer whose body has been read."""
    status = response.status_code
    detail = _detail(response)
    if status == 422 and isinstance(detail, list):
        return ValidationError([field_error(entry) for entry in detail if isinstance(entry, dict)])
    message = detail if isinstance(detail, str) else json.dumps(detail)
    message = message or response.reason_phrase or f"HTTP {status}"
    if status == 429:
        return RateLimited(f"rate limited: {message}", retry_after_s(response))
    if status == 503:
        return ServiceUnavailable(f"service unavailable: {message}", retry_after_s(response))
    if status == 422:
        return ValidationError([FieldError("request", message)])
    by_status: dict[int, type[ClientError]] = {
        401: Unauthorized,
        403: Unauthorized,
        404: NotFound,
        409: Conflict,
    }
    if 400 <= status < 500:
        return by_status.get(status, InvalidRequest)(message, status)
    return ServerError(f"server error {status}: {message}", status)


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    return body.get("detail", body) if isinstance(body, dict) else body


def field_error(entry: dict[str, Any]) -> FieldError:
    """One 422 ``detail`` entry as a FieldError whose message says what the field may be."""
    loc = [str(part) for part in entry.get("loc") or []]
    where, path = (loc[0], loc[1:]) if loc and loc[0] in ("body", "query", "header", "path") else ("", loc)
    error_type = str(entry.get("type", ""))
    message = str(entry.get("msg", "invalid"))
    if error_type == "json_invalid":  # loc is ["body", offset]: the body, not a field
        return FieldError("body", message)
    field = ".".join(path) or where or "request"
    if where == "body" and len(path) == 1 and field in GenerationRequest.model_fields:
        message = _schema_message(field, error_type, message, entry.get("input"))
    elif where == "body" and error_type == "extra_forbidden":
        message = (
            f"{field} is not a request field; the fields are {', '.join(GenerationRequest.model_fields)}"
        )
    return FieldError(field, message)


def _schema_message(field: str, error_type: str, message: str, value: object) -> str:
    """pydantic's message for a request field, worded as the API's own checks word theirs."""
    got = "" if value is None or len(repr(value)) > 80 else f"; got {value!r}"
    if error_type in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        allowed = _range(field)
        if allowed:
            return f"{field} must be {allowed}{got}"
    choices = _choices(field)
    if error_type == "literal_error" and choices:
        return f"{field} must be one of {', '.join(choices)}{got}"
    return f"{message}{got}"


def _range(field: str) -> str:
    """The field's bounds in words: "between 1 and 1000", "at least 0", "above 0 and at most 86400"."""
    low: tuple[object, bool] | None = None  # (bound, inclusive)
    high: tuple[object, bool] | None = None
    for rule in GenerationRequest.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = (rule.ge, True)
        elif isinstance(rule, annotated_types.Gt):
            low = (rule.gt, False)
        elif isinstance(rule, annotated_types.Le):
            high = (rule.le, True)
        elif isinstance(rule, annotated_types.Lt):
            high = (rule.lt, False)
    if low and high and low[1] and high[1]:
        return f"between {_number(low[0])} and {_number(high[0])}"
    words = []
    if low:
        words.append(f"{'at least' if low[1] else 'above'} {_number(low[0])}")
    if high:
        words.append(f"{'at most' if high[1] else 'below'} {_number(high[0])}")
    return " and ".join(words)


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _choices(field: str) -> list[str]:
    """The values of a ``Literal[...] | None`` field, in the contract's order."""
    annotation = GenerationRequest.model_fields[field].annotation
    for part in (annotation, *get_args(annotation)):
        if get_origin(part) is Literal:
            return [str(choice) for choice in get_args(part)]
    return []
