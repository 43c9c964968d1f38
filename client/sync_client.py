"""``DenoiseClient``: the service's API as typed, blocking methods over ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Unpack

import httpx

from client.core import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    EventFollower,
    Knobs,
    Opened,
    PolledEvents,
    RetryPolicy,
    client_headers,
    generation_body,
    parse,
    parse_list,
    post_headers,
    succeeded,
    transport_error,
)
from client.errors import DenoiseError, WaitTimeout, error_for
from protocol.events import JobEvent
from protocol.samplers import SamplerInfo
from protocol.schema import TERMINAL_STATUSES, GenerationRequest, JobView, ModelInfo


class EventStream(Iterator[JobEvent]):
    """A job's events, ending after the final one; ``last_event_id`` resumes it elsewhere.

    Close it (or use it as a context manager) to drop the connection before the end.
    """

    def __init__(self, events: Generator[JobEvent, None, None], follower: EventFollower) -> None:
        self._events = events
        self._follower = follower

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event received over SSE (None while polling)."""
        return self._follower.last_event_id

    def __next__(self) -> JobEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class DenoiseClient:
    """The denoising service's API.

    Args:
        base_url: the API's root, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>`` when given.
        timeout: seconds, or an ``httpx.Timeout``; reads must outlast the API's sync timeout.
        retry: how 429/503 answers and dropped connections are retried.
        poll_interval_s: how often ``wait`` (and the events fallback) read the job.
        max_reconnects: consecutive dropped event streams tolerated before raising.
        headers: extra headers on every request.
        transport: an ``httpx`` transport (tests, proxies, mounts).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll_interval_s: float = 0.5,
        max_reconnects: int = 5,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.poll_interval_s = poll_interval_s
        self.max_reconnects = max_reconnects
        self._sse: bool | None = None  # None: not known yet whether the server streams events
        self._http = httpx.Client(
            base_url=base_url, headers=client_headers(api_key, headers), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DenoiseClient:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------ requests
    def generate(
        self,
        request: GenerationRequest | None = None,
        /,
        *,
        on_event: Callable[[JobEvent], None] | None = None,
        **knobs: Unpack[Knobs],
    ) -> JobView:
        """Samples images and returns the succeeded job (raises ``JobFailed`` otherwise).

        A synchronous POST; when the API answers 202 (the job outlasted its sync timeout) the job
        is followed until it ends. With ``on_event`` the job is submitted asynchronously instead
        and every event (queued, running step k of n, final) is passed to it as it comes.
        """
        if on_event is not None:
            return succeeded(self.follow(self.submit(request, **knobs).id, on_event))
        body = generation_body(request, knobs)
        response = self._send("POST", "/v1/generations", json=body, headers=post_headers(respond_async=False))
        job = parse(JobView, response)
        if response.status_code == 202:
            job = self.wait(job.id)
        return succeeded(job)

    def submit(self, request: GenerationRequest | None = None, /, **knobs: Unpack[Knobs]) -> JobView:
        """Enqueues a job (``Prefer: respond-async``) and returns it queued, at once."""
        body = generation_body(request, knobs)
        return parse(JobView, self._send("POST", "/v1/generations", json=body, headers=post_headers(True)))

    def job(self, job_id: str) -> JobView:
        """The job: status, progress and, once finished, its images (``NotFound`` once expired)."""
        return parse(JobView, self._send("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> JobView:
        """Cancels a job: a queued one never runs, a running one stops within one step.

        Returns the job (``cancelled``, or still ``running`` while it stops); ``Conflict`` when it
        had already finished.
        """
        return parse(JobView, self._send("DELETE", f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Polls the job until it finishes and returns it, whatever its status.

        Raises ``WaitTimeout`` after ``timeout`` seconds (None: until the job ends, which its own
        deadline bounds); the job keeps running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout or 0.0)
            pause = self.poll_interval_s
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)

    def follow(self, job_id: str, on_event: Callable[[JobEvent], None] | None = None) -> JobView:
        """Reads the job's events until the final one (each passed to ``on_event``); the job."""
        with self.events(job_id) as events:
            for event in events:
                if on_event is not None:
                    on_event(event)
                if event.final:
                    return event.job or self.job(job_id)
        return self.wait(job_id)  # the server stopped the stream (204) before the end

    def events(self, job_id: str, last_event_id: str | None = None) -> EventStream:
        """The job's events as they happen, ending after the final one.

        Server-Sent Events from ``GET /v1/jobs/{id}/events``, resumed with ``Last-Event-ID``
        after a dropped connection; from a server without that endpoint (404), events
        synthesised by polling the job.
        """
        follower = EventFollower(job_id, last_event_id, self.max_reconnects)
        return EventStream(self._events(follower), follower)

    def models(self) -> list[ModelInfo]:
        """The models the workers serve, with their conditioning, sizes and defaults."""
        return parse_list(ModelInfo, self._send("GET", "/v1/models"))

    def samplers(self) -> list[SamplerInfo]:
        """The samplers, and which knobs and schedules each honours."""
        return parse_list(SamplerInfo, self._send("GET", "/v1/samplers"))

    # ------------------------------------------------------------------------- plumbing
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried as ``self.retry`` says; a non-2xx answer raised as a DenoiseError."""
        attempt = 0
        while True:
            error: DenoiseError
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as failure:
                error = transport_error(failure, method, path)
            else:
                if response.is_success:
                    return response
                error = error_for(response)
            delay = self.retry.delay(attempt, error)
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    def _events(self, follower: EventFollower) -> Generator[JobEvent, None, None]:
        if self._sse is False:
            yield from self._polled(follower.job_id)
            return
        while not follower.done:
            error: DenoiseError | None = None
            try:
                with self._http.stream("GET", follower.path, headers=follower.headers()) as response:
                    if not response.is_success:
                        response.read()
                        error = error_for(response)
                    opened = follower.opened(response, error)
                    if opened is Opened.STREAM:
                        self._sse = True
                        for chunk in response.iter_bytes():
                            yield from follower.feed(chunk)
                            if follower.done:
                                return
                        yield from follower.end()
            except httpx.TransportError as failure:
                error = transport_error(failure, "GET", follower.path)
            else:
                if opened is Opened.POLL:
                    if follower.endpoint_missing:
                        self._sse = False
                    yield from self._polled(follower.job_id)
                    return
                if opened is Opened.STOP:
                    return
            if not follower.done:
                time.sleep(follower.reconnect_delay(error))

    def _polled(self, job_id: str) -> Generator[JobEvent, None, None]:
        synthesised = PolledEvents()
        while True:
            job = self.job(job_id)
            yield from synthesised.events_for(job)
            if job.status in TERMINAL_STATUSES:
                return
            time.sleep(self.poll_interval_s)
