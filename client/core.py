"""What the sync and the async client share, without I/O: the request knobs, the connection
defaults, the retry policy, answer parsing, and the state machine that follows a job's events
(Server-Sent Events with reconnection, or polling where the server has no events endpoint).

Each client drives these with its own transport (``httpx.Client`` or ``httpx.AsyncClient``), so
the two differ only in ``await``.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, TypeVar, get_args

import httpx
import pydantic

from client.errors import (
    DenoiseError,
    JobFailed,
    NotFound,
    ProtocolError,
    RateLimited,
    ServiceUnavailable,
    TransportError,
)
from client.sse import ServerSentEvent, SSEDecoder
from protocol.events import JobEvent, JobEventType
from protocol.schema import (
    SUCCEEDED,
    TERMINAL_STATUSES,
    GenerationRequest,
    JobView,
    SamplerName,
    ScheduleName,
    VarianceForm,
    VarianceType,
    WebhookEventName,
)

DEFAULT_URL = "http://127.0.0.1:8000"
# A synchronous POST is answered when the job ends or at the API's sync timeout (60 s by
# default, then a 202), so reads may take that long.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=120.0)
DEFAULT_RETRY_S = 1.0  # SSE's reconnection delay until the server sends `retry:`
USER_AGENT = "denoise-client/0.1"


class Knobs(TypedDict, total=False):
    """The fields of ``GenerationRequest`` as keyword arguments (a test keeps the two equal)."""

    model: str | None
    class_label: int | None
    prompt: str | None
    negative_prompt: str | None
    width: int | None
    height: int | None
    num_images: int
    seed: int | None
    steps: int | None
    sampler: SamplerName | None
    schedule: ScheduleName | None
    deterministic: bool | None
    eta: float | None
    variance_bound: float | None
    variance_scale: float | None
    variance_type: VarianceType | None
    variance_form: VarianceForm | None
    clip_sample: bool | None
    dynamic_thresholding: bool | None
    dynamic_thresholding_ratio: float | None
    guidance_scale: float | None
    guidance_rescale: float | None
    init_image: str | None  # base64 PNG or JPEG: ``client.images.init_image(path)`` makes one
    strength: float | Literal["auto"] | None
    timeout_s: float | None
    webhook: str | None
    webhook_events: list[WebhookEventName] | None


def generation_body(request: GenerationRequest | None, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: the request's fields, then the knobs; a None leaves the API's default.

    Nothing is validated here: the API is the authority (an operator may lower its bounds), and
    its 422 becomes a ``ValidationError`` that names the field.
    """
    body = request.model_dump(mode="json", exclude_none=True) if request is not None else {}
    body.update({name: value for name, value in knobs.items() if value is not None})
    return body


def client_headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    merged = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        merged["Authorization"] = f"Bearer {api_key}"
    merged.update(headers or {})
    return merged


def post_headers(respond_async: bool) -> dict[str, str]:
    """A fresh Idempotency-Key per call: the call's retries can never make a second job."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if respond_async:
        headers["Prefer"] = "respond-async"
    return headers


Model = TypeVar("Model", bound=pydantic.BaseModel)


def parse(model: type[Model], response: httpx.Response) -> Model:
    try:
        return model.model_validate_json(response.content)
    except pydantic.ValidationError as error:
        raise ProtocolError(f"{response.request.url.path}: not a {model.__name__}: {error}") from error


def parse_list(model: type[Model], response: httpx.Response) -> list[Model]:
    try:
        return pydantic.TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
    except pydantic.ValidationError as error:
        raise ProtocolError(
            f"{response.request.url.path}: not a list of {model.__name__}: {error}"
        ) from error


def succeeded(job: JobView) -> JobView:
    """The job, or JobFailed when it ended failed or cancelled."""
    if job.status != SUCCEEDED:
        raise JobFailed(job)
    return job


# ------------------------------------------------------------------------------ retries
# Connection failures that are safe to retry: the request either never reached the API, or it
# was a read, or a POST with an Idempotency-Key. A read timeout is not among them: the API is
# slow, and asking again would only double the wait.
RETRYABLE_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def transport_error(error: httpx.TransportError, method: str, path: str) -> TransportError:
    try:
        where = str(error.request.url)
    except RuntimeError:  # httpx raised it before the request was built
        where = path
    return TransportError(
        f"{method} {where}: {type(error).__name__}: {error or 'connection failed'}",
        retryable=isinstance(error, RETRYABLE_TRANSPORT),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429 and 503 answers (honouring Retry-After) and of dropped connections.

    Attributes:
        max_retries: retries after the first attempt; 0 turns retrying off.
        max_wait_s: the longest wait honoured; a Retry-After above it is raised at once.
        backoff_s: the first wait when the answer has no Retry-After, doubled at each retry.
    """

    max_retries: int = 3
    max_wait_s: float = 30.0
    backoff_s: float = 0.5

    def delay(self, attempt: int, error: DenoiseError) -> float | None:
        """Seconds to wait before retrying after ``error`` (``attempt`` retries so far), or None."""
        if attempt >= self.max_retries:
            return None
        backoff = self.backoff_s * 2**attempt
        if isinstance(error, RateLimited | ServiceUnavailable):
            wait = error.retry_after_s if error.retry_after_s is not None else backoff
        elif isinstance(error, TransportError) and error.retryable:
            wait = backoff
        else:
            return None
        return wait if wait <= self.max_wait_s else None


# ------------------------------------------------------------------------- job events
class Opened(enum.Enum):
    STREAM = "stream"  # read the event stream
    POLL = "poll"  # the server has no events endpoint: poll the job instead
    STOP = "stop"  # 204: the server says there is nothing more to follow
    RETRY = "retry"  # 429/503: reconnect after a delay


_EVENT_TYPES = frozenset(get_args(JobEventType))


class EventFollower:
    """Follows one job's event stream across connections (SSE, ``Last-Event-ID`` resume).

    The client opens ``GET /v1/jobs/{id}/events`` with ``headers()``, passes the answer to
    ``opened`` and each body chunk to ``feed``; when the connection ends without a final event
    it waits ``reconnect_delay(error)`` seconds and opens again. ``done`` is set by the final
    event. ``max_reconnects`` consecutive failed connections (no event between them) raise.
    """

    def __init__(self, job_id: str, last_event_id: str | None, max_reconnects: int) -> None:
        self.job_id = job_id
        self.path = f"/v1/jobs/{job_id}/events"
        self.last_event_id = last_event_id
        self.max_reconnects = max_reconnects
        self.done = False
        self.endpoint_missing = False  # a 404 from a server without the route, not for the job
        self._decoder = SSEDecoder(last_event_id)
        self._failures = 0
        self._retry_after_s: float | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def opened(self, response: httpx.Response, error: DenoiseError | None) -> Opened:
        """What to do with an answer; ``error`` is its error when it is not a 2xx (body read)."""
        if response.status_code == 404:
            # No such endpoint on this server, or no such job (then polling raises NotFound);
            # FastAPI's answer for a route it does not have is the bare "Not Found".
            self.endpoint_missing = isinstance(error, NotFound) and error.message == "Not Found"
            return Opened.POLL
        if response.status_code == 204:
            return Opened.STOP
        if error is not None:
            if isinstance(error, RateLimited | ServiceUnavailable):
                self._retry_after_s = error.retry_after_s
                return Opened.RETRY
            raise error
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise ProtocolError(f"{self.path}: expected text/event-stream, got {content_type!r}")
        self._decoder = SSEDecoder(self.last_event_id, self._decoder.retry_ms)
        return Opened.STREAM

    def feed(self, chunk: bytes) -> list[JobEvent]:
        return self._events(self._decoder.feed(chunk))

    def end(self) -> list[JobEvent]:
        """The end of one connection's body: events a final CR completes."""
        return self._events(self._decoder.end())

    def _events(self, messages: list[ServerSentEvent]) -> list[JobEvent]:
        events = []
        for message in messages:
            self.last_event_id = message.id
            if message.event not in _EVENT_TYPES and message.event != "message":
                continue  # an event type of a newer server: not ours to interpret
            try:
                event = JobEvent.model_validate_json(message.data)
            except pydantic.ValidationError as error:
                raise ProtocolError(f"{self.path}: event {message.id}: not a JobEvent: {error}") from error
            self._failures = 0
            events.append(event)
            if event.final:
                self.done = True
                break
        return events

    def reconnect_delay(self, error: DenoiseError | None) -> float:
        """Seconds to wait before reconnecting after a drop (``error``: why, if known), or raises."""
        self._failures += 1
        if self._failures > self.max_reconnects:
            raise error or TransportError(
                f"{self.path}: the event stream ended {self._failures} times without a final event"
            )
        delay, self._retry_after_s = self._retry_after_s, None  # a 429/503's Retry-After first
        if delay is None:
            retry_ms = self._decoder.retry_ms  # `retry:` holds from when it is read, event or not
            delay = retry_ms / 1000 if retry_ms is not None else DEFAULT_RETRY_S
        return delay


class PolledEvents:
    """Events synthesised from successive ``GET /v1/jobs/{id}`` answers, for servers without an
    events endpoint: ``queued`` once, ``running`` at each new step, then the final event."""

    def __init__(self) -> None:
        self._last: tuple[str, int, int] | None = None

    def events_for(self, view: JobView) -> list[JobEvent]:
        total = view.progress.total or view.config.steps
        state = (view.status, view.progress.step, total)
        if state == self._last:
            return []
        self._last = state
        now = time.time()
        if view.status in TERMINAL_STATUSES:
            event = JobEvent(type=view.status, job_id=view.id, at=now, job=view, error=view.error)
        elif view.status == "running":
            event = JobEvent(type="running", job_id=view.id, at=now, step=view.progress.step, total=total)
        else:
            event = JobEvent(type="queued", job_id=view.id, at=now)
        return [event]
