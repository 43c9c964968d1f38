"""How a job leaves a worker: the outcomes, the errors stored with them, and ``JobEndings.end``,
the one way out, whatever the outcome: the job is forgotten, its outcome stored, its stream
entry acknowledged, and it is counted and logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

from protocol.events import JobEvent
from protocol.schema import CANCELLED, FAILED, SUCCEEDED, JobError, JobResult, JobStatus, Progress
from workers.job_store import StreamEntry, WorkerJobStore
from workers.metrics import ModelMetrics

log = logging.getLogger("workers.worker")


class DeadlineExceeded(Exception):
    """The job's deadline (``JobRecord.deadline_at``) passed before it finished."""


class PoisonJob(Exception):
    """The job was started ``max_deliveries`` times and never finished."""


class Outcome(Enum):
    """How a job leaves a worker."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # its deadline passed, in the queue or while running

    @property
    def status(self) -> JobStatus:
        """The status stored and counted (``denoise_worker_jobs_finished_total``): an expired
        job is failed with ``DeadlineExceeded``."""
        return {Outcome.SUCCEEDED: SUCCEEDED, Outcome.CANCELLED: CANCELLED}.get(self, FAILED)


class JobEndings:
    """How the jobs of one served model end.

    Args:
        store: that model's stream and the job records.
        metrics: the worker's metrics, bound to that model.
        forget: drops a job from the model's in-flight set and from its engine.
    """

    def __init__(self, store: WorkerJobStore, metrics: ModelMetrics, forget: Callable[[str], None]) -> None:
        self.store = store
        self.metrics = metrics
        self.forget = forget

    def end(
        self,
        job_id: str,
        entry_id: str,
        outcome: Outcome,
        *,
        error: Exception | None = None,
        result: JobResult | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Forgets the job, stores its outcome (write-once: a job that another worker, a cancel or
        the deadline ended first keeps that ending), acknowledges the entry, counts it and logs
        one line. A result is forgotten only once stored (a Redis error keeps it for the next
        loop); any other outcome first, so the job cannot run on here (if storing fails, its
        entry, no longer refreshed, goes to another worker after the lease).

        Args:
            error: what a failed or expired job stores (``JobError``: its type name and message).
            result: what a succeeded job stores.
            progress: where the job stood (required for succeeded and cancelled).
        """
        if outcome is not Outcome.SUCCEEDED:
            self.forget(job_id)
        if outcome is Outcome.SUCCEEDED and result is not None and progress is not None:
            written = self.store.succeed(job_id, result, progress)
        elif outcome is Outcome.CANCELLED and progress is not None:
            written = self.store.cancel(job_id, progress)
        elif outcome in (Outcome.FAILED, Outcome.EXPIRED) and error is not None:
            written = self.store.fail(
                job_id, JobError(type=type(error).__name__, message=str(error)), progress
            )
        else:
            raise ValueError(f"job {job_id} {outcome.value}: missing its result, progress or error")
        self.store.ack(entry_id)
        self.forget(job_id)
        if written:  # the job's one final event (SSE and webhook readers re-read the record for its body)
            job_error = None if error is None else JobError(type=type(error).__name__, message=str(error))
            self.store.append_event(
                JobEvent(type=outcome.status, job_id=job_id, at=time.time(), error=job_error)
            )
        if result is None:
            self.metrics.jobs_finished(outcome.status).inc()
            step = None if progress is None else progress.step
            log.info("job %s %s step=%s error=%r", job_id, outcome.value, step, error)
            return
        timings = result.timings
        self.metrics.inference.observe(timings.inference_ms / 1000)
        self.metrics.encode.observe(timings.encode_ms / 1000)
        self.metrics.total.observe(timings.total_ms / 1000)
        if written:
            self.metrics.jobs_finished(outcome.status).inc()
            self.metrics.images.inc(len(result.images))
        else:  # another worker (or a cancel, or the deadline) finished it first: its result stands
            self.metrics.results_discarded.inc()
        log.info(
            "job %s succeeded images=%d inference_ms=%.1f total_ms=%.1f stored=%s",
            job_id,
            len(result.images),
            timings.inference_ms,
            timings.total_ms,
            written,
        )

    def dead_letter(self, entry: StreamEntry, reason: str) -> None:
        """Copies an entry no worker can run to the dead-letter stream, and acknowledges it."""
        log.warning("entry %s (job %s) dead-lettered: %s", entry.entry_id, entry.job_id, reason)
        self.store.dead_letter(entry, reason)
        self.metrics.dead_lettered.inc()
