"""A Server-Sent Events decoder: bytes in, events out; no I/O, so the sync and the async client
share it, and a test can feed it any byte stream.

It follows the WHATWG HTML standard's "event stream interpretation"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

1. the stream is UTF-8; one leading byte-order mark is dropped;
2. lines end with CRLF, LF or CR, and a CR at the end of one chunk may pair with an LF at the
   start of the next;
3. a line starting with ``:`` is a comment (servers send them as keep-alives);
4. ``field: value`` (one space after the colon is dropped; a line without a colon is a field
   with an empty value): ``event`` names the event, ``data`` lines are joined with ``\\n``,
   ``id`` sets the last event id (unless it contains NUL) and persists across events, ``retry``
   (digits only) sets the reconnection delay in milliseconds; other fields are ignored;
5. a blank line dispatches the event, unless it has no data; an event the stream ends in the
   middle of is dropped.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None
    retry_ms: int | None


class SSEDecoder:
    """Feed it the body's chunks; it returns the events each chunk completes.

    One decoder per connection; a reconnection starts a new one with the ``last_event_id`` and
    ``retry_ms`` of the old one (they outlive connections, the half-read event does not).
    """

    def __init__(self, last_event_id: str | None = None, retry_ms: int | None = None) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # the text after the last complete line
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self.last_event_id = last_event_id
        self.retry_ms = retry_ms

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        buffer = self._pending + text
        events: list[ServerSentEvent] = []
        start = 0
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            if buffer[end] == "\r":
                if end + 1 == len(buffer):  # maybe the CR of a CRLF split across chunks
                    break
                after = end + 2 if buffer[end + 1] == "\n" else end + 1
            else:
                after = end + 1
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = after
        self._pending = buffer[start:]
        return events

    def end(self) -> list[ServerSentEvent]:
        """At the end of the stream: the event a final held-back CR completes, if any."""
        tail = self._pending + self._text.decode(b"", final=True)
        self._pending = ""
        if tail.endswith("\r"):
            event = self._line(tail[:-1])
            return [event] if event is not None else []
        return []

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=self.last_event_id, retry_ms=self.retry_ms
        )
