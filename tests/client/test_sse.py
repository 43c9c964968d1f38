"""The SSE decoder on canned byte streams, and event following across a dropped connection
(``httpx.MockTransport``: no server)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from client import DenoiseClient, ProtocolError
from client.sse import ServerSentEvent, SSEDecoder
from protocol.events import JobEvent
from protocol.schema import JobView
from tests.conftest import resolved_config

CANNED = (
    b"\xef\xbb\xbf: a comment, as servers send for keep-alive\r\n"
    b"retry: 2500\n"
    b"id: 1-0\n"
    b"event: queued\n"
    b'data: {"type": "queued",\n'
    b'data:  "job_id": "j"}\n'
    b"\n"
    b"id:1-1\r"
    b"event:running\r"
    b"data:step \xcf\x83\xcc\x82\r"
    b"unknown: field\r"
    b"\r"
    b"data: no id line: the last one persists\r\n"
    b"retry: soon\r\n"
    b"\r\n"
    b"event: no data, never dispatched\n\n"
    b"id\n"
    b"data\n"
    b"\n"
    b"id: with\x00nul is ignored\n"
    b"data: after\n\n"
    b"data: the stream ends before this event does"
)
EXPECTED = [
    ServerSentEvent("queued", '{"type": "queued",\n "job_id": "j"}', "1-0", 2500),
    ServerSentEvent("running", "step σ\u0302", "1-1", 2500),
    ServerSentEvent("message", "no id line: the last one persists", "1-1", 2500),
    ServerSentEvent("message", "", "", 2500),
    ServerSentEvent("message", "after", "", 2500),
]


def decode(chunks: Iterator[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.end()


def test_decoder_reads_data_lines_comments_retry_and_ids() -> None:
    assert decode(iter([CANNED])) == EXPECTED


def test_decoder_is_indifferent_to_chunk_boundaries() -> None:
    """Byte by byte: a CRLF, a UTF-8 character and the BOM split across chunks."""
    assert decode(CANNED[i : i + 1] for i in range(len(CANNED))) == EXPECTED
    assert decode(iter([CANNED[:7], CANNED[7:100], CANNED[100:]])) == EXPECTED


def test_a_final_cr_dispatches_at_the_end_of_the_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\r") == []  # the last CR may be the start of a CRLF
    assert decoder.end() == [ServerSentEvent("message", "x", None, None)]


# ------------------------------------------------------------------ following a job's events
def job_view(status: str = "succeeded") -> JobView:
    return JobView.model_validate(
        {
            "id": "a" * 32,
            "status": status,
            "model": "mnist-unet",
            "progress": {"step": 3, "total": 3},
            "config": resolved_config(steps=3).model_dump(),
            "created_at": 1.0,
        }
    )


def sse(event_id: str, event: JobEvent) -> bytes:
    return f"id: {event_id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


class DroppedStream(httpx.SyncByteStream):
    """A body that breaks off after its chunks, as a connection reset would."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset by peer")


def test_events_resume_with_last_event_id_after_a_dropped_connection() -> None:
    job_id = "a" * 32
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        headers = {"content-type": "text/event-stream"}
        if len(asked) == 1:
            first = [
                b"retry: 10\n: keep-alive\n\n",
                sse("5-0", JobEvent(type="queued", job_id=job_id, at=1.0, queue_position=1)),
                sse("5-1", JobEvent(type="running", job_id=job_id, at=2.0, step=1, total=3)),
                b"id: 5-2\ndata: {half an ev",  # cut mid-event: never seen
            ]
            return httpx.Response(200, headers=headers, stream=DroppedStream(first))
        if len(asked) == 2:
            return httpx.Response(503, headers={"retry-after": "0"}, json={"detail": "queue unavailable"})
        rest = [
            sse("5-2", JobEvent(type="running", job_id=job_id, at=3.0, step=2, total=3)),
            sse("5-3", JobEvent(type="succeeded", job_id=job_id, at=4.0, job=job_view())),
            sse("5-4", JobEvent(type="running", job_id=job_id, at=5.0, step=9, total=9)),  # never read
        ]
        return httpx.Response(200, headers=headers, content=b"".join(rest))

    with DenoiseClient("http://denoise.test", transport=httpx.MockTransport(handler)) as api:
        stream = api.events(job_id)
        events = list(stream)
    assert [(e.type, e.step) for e in events] == [
        ("queued", None),
        ("running", 1),
        ("running", 2),
        ("succeeded", None),
    ]
    assert events[-1].job is not None and events[-1].job.status == "succeeded"
    assert asked == [None, "5-1", "5-1"]  # resumed after the last whole event, through the 503
    assert stream.last_event_id == "5-3"


def test_events_give_up_after_max_reconnects_without_an_event() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"retry: 1\n\n")

    api = DenoiseClient("http://denoise.test", transport=httpx.MockTransport(handler), max_reconnects=2)
    with api, pytest.raises(Exception, match="without a final event"):
        list(api.events("b" * 32))
    assert len(calls) == 3


def test_a_malformed_event_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = b"event: running\ndata: " + json.dumps({"type": "running"}).encode() + b"\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    api = DenoiseClient("http://denoise.test", transport=httpx.MockTransport(handler))
    with api, pytest.raises(ProtocolError, match="not a JobEvent"):
        list(api.events("c" * 32))


def test_a_404_for_the_job_polls_without_giving_up_on_sse() -> None:
    """A server with the events route answers 404 for a job it does not stream: this once the
    client polls, and it still asks for the stream next time (only a missing route is remembered)."""
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"detail": f"job {'a' * 32} not found (finished jobs expire)"})
        return httpx.Response(200, content=job_view().model_dump_json())

    with DenoiseClient("http://denoise.test", transport=httpx.MockTransport(handler)) as api:
        assert [event.type for event in api.events("a" * 32)] == ["succeeded"]
        assert [event.type for event in api.events("a" * 32)] == ["succeeded"]
    assert paths == [f"/v1/jobs/{'a' * 32}/events", f"/v1/jobs/{'a' * 32}"] * 2
