"""The progress bar drawn from job events (no server)."""

from __future__ import annotations

import io

from client.progress import ProgressBar
from protocol.events import JobEvent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_counts_the_steps_of_every_job_and_ends_its_line() -> None:
    screen = Terminal()
    bar = ProgressBar(stream=screen, width=10)
    bar.expect("a", 20)
    bar.expect("b", 10)
    bar.update(JobEvent(type="queued", job_id="b", at=0.0, queue_position=2))
    bar.update(JobEvent(type="running", job_id="a", at=0.0, step=15, total=20))
    assert bar.line().startswith("[#####-----] 15/30 steps  1 running, 1 queued (next #2)")
    bar.update(JobEvent(type="running", job_id="b", at=0.0, step=10, total=10))
    bar.update(JobEvent(type="succeeded", job_id="a", at=0.0))
    bar.close()
    last = screen.getvalue().split("\r")[-1]
    assert last.startswith("[##########] 30/30 steps  1 succeeded, 1 running") and last.endswith("\n")


def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    quiet = io.StringIO()
    bar = ProgressBar(stream=quiet)
    bar.update(JobEvent(type="running", job_id="a", at=0.0, step=1, total=2))
    bar.close()
    assert quiet.getvalue() == ""
