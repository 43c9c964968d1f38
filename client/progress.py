"""A one-line progress bar on stderr, fed by job events (one job, or the jobs of a comparison)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from protocol.events import JobEvent

REDRAW_EVERY_S = 0.1


class ProgressBar:
    """``[##########----------] 12/30 steps  2 running, 1 queued (next #3)  4.1 s``

    Args:
        stream: where to draw (stderr); redrawn in place with ``\\r``.
        enabled: None draws only when ``stream`` is a terminal.
        width: characters of the bar itself.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self._jobs: dict[str, tuple[str, int, int]] = {}  # job id -> (status, step, total)
        self._queue_position: int | None = None
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn = False

    def expect(self, job_id: str, total: int) -> None:
        """Counts a submitted job's steps before its first event."""
        self._jobs.setdefault(job_id, ("queued", 0, total))

    def update(self, event: JobEvent) -> None:
        status, step, total = self._jobs.get(event.job_id, ("queued", 0, 0))
        if event.type == "queued":
            self._queue_position = event.queue_position
        elif event.type == "running":
            status, step, total = "running", event.step or step, event.total or total
        else:
            status = event.type
            if event.job is not None:
                total = event.job.progress.total or total
                step = event.job.progress.step
            if event.type == "succeeded":
                step = total
        self._jobs[event.job_id] = (status, step, total)
        self.draw(force=event.final)

    def line(self) -> str:
        step = sum(step for _status, step, _total in self._jobs.values())
        total = sum(total for _status, _step, total in self._jobs.values())
        filled = self.width * step // total if total else 0
        counts: dict[str, int] = {}
        for status, _step, _total in self._jobs.values():
            counts[status] = counts.get(status, 0) + 1
        states = ", ".join(f"{count} {status}" for status, count in counts.items())
        if counts.get("queued") and self._queue_position is not None:
            states += f" (next #{self._queue_position})"
        elapsed = time.monotonic() - self._started
        return (
            f"[{'#' * filled}{'-' * (self.width - filled)}] {step}/{total} steps  {states}  {elapsed:.1f} s"
        )

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn_at < REDRAW_EVERY_S):
            return
        self.stream.write("\r" + self.line() + "\033[K")
        self.stream.flush()
        self._drawn_at, self._drawn = now, True

    def close(self) -> None:
        """Ends the line, so what is printed next starts on its own."""
        if self._drawn:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
