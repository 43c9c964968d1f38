"""The worker process: a guarded state machine (``workers.lifecycle``) around the sampling engine.

The loop is four small methods: ``poll`` (take jobs from the stream while the engine has free
rows; stop cancelled and expired ones), ``start`` (a stream entry becomes admitted images),
``tick`` (one batched step of the engine) and ``finish`` (encode finished jobs, store them).
Every job leaves through ``JobEndings.end`` (``workers.outcomes``), whatever its outcome; it
is acknowledged only after its outcome is stored. While busy, ``poll`` costs one Redis round
trip per step.
"""

from __future__ import annotations

import logging
import time

import redis

from protocol.records import CorruptJobRecord
from protocol.schema import WorkerState
from workers.heartbeat import Heartbeat
from workers.in_flight import InFlightJob, refusal
from workers.job_store import StreamEntry, WorkerJobStore
from workers.lifecycle import Lifecycle
from workers.metrics import WorkerMetrics
from workers.models.loading import LoadedModel
from workers.outcomes import JobEndings, Outcome, PoisonJob
from workers.results import build_result
from workers.sampling.engine import BatchFailed, SamplingEngine
from workers.sampling.state import GUIDED_ROWS, new_states
from workers.settings import WorkerSettings

log = logging.getLogger("workers.worker")


class Worker:
    def __init__(
        self, settings: WorkerSettings, model: LoadedModel, client: redis.Redis, metrics: WorkerMetrics
    ) -> None:
        self.settings = settings
        self.model = model
        self.store = WorkerJobStore(client, model.info.name, settings.worker_name, settings.job_ttl_s)
        self.metrics = metrics
        self.engine = SamplingEngine(model, max_rows=settings.max_batch)
        self.jobs: dict[str, InFlightJob] = {}  # by job id, in admission order
        self.lifecycle = Lifecycle(settings.shutdown_grace_s)
        self.endings = JobEndings(self.store, metrics, forget=self._forget)
        # the heartbeat thread iterates a copy of the jobs in flight
        self.heartbeat = Heartbeat(
            self.store, settings, model.info, self.lifecycle, lambda: list(self.jobs.values())
        )
        self._reclaimed_at = float("-inf")

    def request_stop(self) -> None:
        """Stop claiming new jobs; in-flight jobs run to the end (``run`` then returns)."""
        self.lifecycle.request_stop()

    def run(self, burst: bool = False) -> None:
        """The main loop; with ``burst`` it returns once the stream is drained and idle."""
        self.store.ensure_group()
        self.store.register_model(self.model.info)
        self.metrics.model_load.set(self.model.load_seconds)
        self.lifecycle.to(WorkerState.READY)
        self.heartbeat.start()
        name, max_batch = self.settings.worker_name, self.settings.max_batch
        log.info("worker %s ready model=%s max_batch=%d", name, self.model.info.name, max_batch)
        while True:
            draining = self.lifecycle.draining()
            if draining and not self.jobs:
                break
            if self.lifecycle.grace_over():
                # left unacknowledged, the jobs stay pending in the stream for another worker
                log.warning("grace period over: leaving %d jobs unfinished", len(self.jobs))
                break
            try:
                admitted = self.poll(admit=not draining)
                if burst and not admitted and not self.jobs:
                    break
                self.tick()
                self.finish()
            except redis.RedisError as error:
                log.warning("redis error: %s; retrying in 1 s", error)
                time.sleep(1.0)
        self.lifecycle.stop()
        self.heartbeat.stop()
        log.info("worker %s stopped", name)

    # ------------------------------------------------------------------ the loop
    def poll(self, admit: bool = True) -> int:
        """Admits jobs while the engine has free rows, and stops cancelled and expired ones.

        Abandoned jobs (their worker died) come first: they are older than anything new. Room
        is counted in rows, read again once they are admitted; a job's size is known only from
        its record, so each new entry asked for is reckoned one guided image. Idle, the worker
        blocks on the stream; busy, ONE round trip reads new entries without blocking and the
        cancel flags of the jobs in flight, so a cancel acts within one step.
        """
        taken = self._reclaim() if admit else []
        rows = self.engine.rows_free if admit else 0
        count = max(1, rows // GUIDED_ROWS) if rows > 0 else 0
        if self.jobs:
            fresh, cancelled = self.store.read_new_and_cancel_flags(count, list(self.jobs))
            self.stop_jobs(cancelled)
        else:
            fresh = self.store.read_new(count, None if taken else self.settings.block_ms) if count else []
        for entry in fresh:
            self.start(entry)
        return len(taken) + len(fresh)

    def start(self, entry: StreamEntry) -> None:
        """Admits the entry's job to the engine, or ends it at once (unreadable, poison, expired)."""
        if entry.job_id is None:
            self.endings.dead_letter(
                entry, "malformed stream entry: expected exactly one field, job = a job id"
            )
            return
        if entry.job_id in self.jobs:  # its entry taken over from this very worker: it runs already
            log.warning("entry %s: job %s is already running here", entry.entry_id, entry.job_id)
            return
        try:
            record = self.store.start(entry.job_id)
        except CorruptJobRecord as error:
            self.endings.dead_letter(entry, str(error))
            self.endings.end(entry.job_id, entry.entry_id, Outcome.FAILED, error=error)
            return
        if record is None:
            log.info("job %s skipped: finished, cancelled or expired", entry.job_id)
            self.store.ack(entry.entry_id)
            return
        self.store.publish(record.id)
        refused = refusal(record, self.settings.max_deliveries, time.time())
        if refused is not None:
            outcome, why = refused
            if isinstance(why, PoisonJob):
                self.endings.dead_letter(entry, str(why))
            self.endings.end(record.id, entry.entry_id, outcome, error=why)
            return
        try:
            states = new_states(record.id, record.config, self.model)
        except Exception as error:  # a config the engine cannot run must fail the job, not the worker
            log.exception("job %s failed to start", record.id)
            self.endings.end(record.id, entry.entry_id, Outcome.FAILED, error=error)
            return
        job = InFlightJob(record=record, entry_id=entry.entry_id, states=states)
        self.engine.admit(states)
        self.jobs[job.job_id] = job
        self.metrics.queue_wait.observe(max(0.0, job.admitted_at - record.created_at))
        cfg = record.config
        log.info(
            "job %s started sampler=%s schedule=%s steps=%d images=%d guidance=%g attempt=%d",
            record.id,
            cfg.sampler,
            cfg.schedule,
            cfg.steps,
            cfg.num_images,
            cfg.guidance_scale,
            record.attempts,
        )

    def stop_jobs(self, cancelled: set[str]) -> None:
        """Ends the jobs a client cancelled and those past their deadline; the rest go on."""
        now = time.time()
        for job in list(self.jobs.values()):
            if job.job_id in cancelled:
                self.endings.end(job.job_id, job.entry_id, Outcome.CANCELLED, progress=job.progress())
            elif (overdue := job.overdue(now)) is not None:
                self.endings.end(
                    job.job_id, job.entry_id, Outcome.EXPIRED, error=overdue, progress=job.progress()
                )

    def tick(self) -> None:
        """One batched step of the engine: its oldest images, up to ``max_batch`` rows."""
        busy = self.engine.rows_in_flight > 0
        self.lifecycle.settle(busy)
        self.metrics.busy.set(1 if busy else 0)
        self.metrics.in_flight.set(sum(len(job.states) for job in self.jobs.values()))
        try:
            stats = self.engine.tick()
        except BatchFailed as failed:
            log.exception("forward failed; failing the jobs in this batch")
            for job_id in failed.job_ids:
                self.endings.end(job_id, self.jobs[job_id].entry_id, Outcome.FAILED, error=failed.error)
            return
        if stats is not None:
            self.metrics.step.observe(stats.step_seconds)
            self.metrics.batch_rows.observe(stats.rows)
            self.metrics.forward.observe(stats.forward_seconds)
            self._write_progress()

    def finish(self) -> None:
        """Encodes the jobs the engine hands back, then stores every encoded result. A job stays
        in flight until its result is stored: if Redis is away, the next loop retries it."""
        for states in self.engine.finished():
            job = self.jobs[states[0].job_id]
            job.result = build_result(states, job.record, job.admitted_at, self.settings.worker_name)
            for image in job.result.images:
                self.metrics.noise_estimate.observe(image.noise_estimate)
        for job in [j for j in self.jobs.values() if j.result is not None]:
            self.endings.end(
                job.job_id, job.entry_id, Outcome.SUCCEEDED, result=job.result, progress=job.progress()
            )

    # ------------------------------------------------------------------ helpers
    def _reclaim(self) -> list[StreamEntry]:
        """Takes over and starts entries whose worker died (every ``reclaim_interval_s``, while
        there are rows for a guided image)."""
        now, rows = time.monotonic(), self.engine.rows_free
        if rows < GUIDED_ROWS or now - self._reclaimed_at < self.settings.reclaim_interval_s:
            return []
        self._reclaimed_at = now
        taken = self.store.reclaim(rows // GUIDED_ROWS, self.settings.lease_s)
        self.metrics.reclaimed.inc(len(taken))
        for entry in taken:
            log.warning(
                "entry %s (job %s) taken over from a worker that stopped", entry.entry_id, entry.job_id
            )
            self.start(entry)
        return taken

    def _forget(self, job_id: str) -> None:
        self.engine.drop(job_id)
        self.jobs.pop(job_id, None)

    def _write_progress(self) -> None:
        now, interval = time.time(), self.settings.progress_interval_s
        due = [
            job for job in self.jobs.values() if not job.done and now - job.progress_written_at >= interval
        ]
        if due:
            self.store.write_progress({job.job_id: job.progress() for job in due})
            for job in due:
                job.progress_written_at = now
