"""The worker's bookkeeping of a job it runs, and the checks a job passes before it starts.

An ``InFlightJob`` is a started job: its record, its stream entry (acknowledged when the job
ends), its images (the same ``SamplingState`` objects the engine advances) and, once they are
done, its encoded result, kept until Redis has stored it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from protocol.schema import JobRecord, JobResult, Progress
from workers.outcomes import DeadlineExceeded, Outcome, PoisonJob
from workers.sampling.state import SamplingState


def refusal(record: JobRecord, max_deliveries: int, now: float) -> tuple[Outcome, Exception] | None:
    """Why a started record must not run (None: it may): it has killed its workers before, or its
    deadline passed while it was queued."""
    if record.attempts > max_deliveries:
        # each start counts; a job that was started this often never finished, so its
        # workers died running it: running it again would only kill the next one
        return Outcome.FAILED, PoisonJob(
            f"started {record.attempts - 1} times without finishing (max_deliveries "
            f"{max_deliveries}): each worker running it stopped; dead-lettered"
        )
    if record.deadline_at is not None and now > record.deadline_at:
        waited = now - record.created_at
        return Outcome.EXPIRED, DeadlineExceeded(
            f"deadline passed before the job started ({waited:.1f} s in the queue)"
        )
    return None


@dataclass(eq=False)
class InFlightJob:
    record: JobRecord
    entry_id: str
    states: list[SamplingState]
    admitted_at: float = field(default_factory=time.time)
    progress_written_at: float = 0.0
    preview_written_at: float = 0.0
    result: JobResult | None = None  # encoded once; kept until it is stored

    @property
    def job_id(self) -> str:
        return self.record.id

    @property
    def done(self) -> bool:
        return all(s.done for s in self.states)

    def progress(self) -> Progress:
        return Progress(step=min(s.steps_taken for s in self.states), total=self.states[0].steps_to_run)

    def overdue(self, now: float) -> DeadlineExceeded | None:
        """The error to fail the job with if its deadline has passed by ``now``."""
        deadline = self.record.deadline_at
        if deadline is None or now <= deadline:
            return None
        progress = self.progress()
        return DeadlineExceeded(
            f"deadline passed at step {progress.step} of {progress.total} "
            f"({deadline - self.record.created_at:g} s after submission)"
        )
