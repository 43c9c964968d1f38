"""One model a worker serves: its stream, its engine and its jobs in flight.

A worker holds one ``ServedModel`` per model (``DENOISE_MODELS``). Each has its own
``WorkerJobStore`` (the model's stream: leases, takeover and dead letters are per stream), its
own ``SamplingEngine`` with the whole ``max_batch`` row budget (the worker runs the models'
forwards one after another, so memory peaks at one forward of ``max_batch`` rows whatever the
number of models) and its own ``JobEndings``. The worker reads every stream at once and hands
each model its entries (``start``); then each model with images in flight takes ONE batched
step (``tick``) and stores what finished (``finish``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time

import redis

from protocol.events import JobEvent
from protocol.records import CorruptJobRecord
from protocol.schema import JobRecord, Progress
from workers.in_flight import InFlightJob, refusal
from workers.init_images import InitImage, InitImageUnusable
from workers.job_store import StreamEntry, WorkerJobStore
from workers.metrics import WorkerMetrics
from workers.models.loading import LoadedModel
from workers.outcomes import JobEndings, Outcome, PoisonJob
from workers.previews import preview_png
from workers.results import build_result
from workers.sampling.engine import BatchFailed, SamplingEngine
from workers.sampling.state import GUIDED_ROWS, new_states
from workers.settings import WorkerSettings

log = logging.getLogger("workers.worker")


class ServedModel:
    def __init__(
        self, model: LoadedModel, client: redis.Redis, settings: WorkerSettings, metrics: WorkerMetrics
    ) -> None:
        self.model = model
        self.name = model.info.name
        self.settings = settings
        self.store = WorkerJobStore(client, self.name, settings.worker_name, settings.job_ttl_s)
        self.engine = SamplingEngine(model, max_rows=settings.max_batch, step_mode=settings.step_mode)
        self.metrics = metrics.for_model(self.name)
        self.jobs: dict[str, InFlightJob] = {}  # by job id, in admission order
        self.endings = JobEndings(self.store, self.metrics, forget=self._forget)
        self._reclaimed_at = float("-inf")

    @property
    def stream(self) -> str:
        return self.store.stream

    def register(self) -> None:
        """Creates the stream's consumer group and publishes the model (``GET /v1/models``)."""
        self.store.ensure_group()
        self.store.register_model(self.model.info, self.model.tokenizer_json())
        self.metrics.model_load.set(self.model.load_seconds)

    def jobs_now(self) -> list[InFlightJob]:
        """The jobs in flight, as a copy another thread (the heartbeat) may iterate."""
        return list(self.jobs.values())

    def entries_wanted(self) -> int:
        """How many new entries to read: the free rows in guided images (a job's size is known
        only from its record, so each entry is reckoned one guided image); 0 when full."""
        rows = self.engine.rows_free
        return max(1, rows // GUIDED_ROWS) if rows > 0 else 0

    # ------------------------------------------------------------------ the loop
    def reclaim(self) -> list[StreamEntry]:
        """Takes over and starts entries whose worker died (every ``reclaim_interval_s``, while
        there are rows for a guided image). Abandoned entries go before new ones: they are older."""
        now, rows = time.monotonic(), self.engine.rows_free
        if rows < GUIDED_ROWS or now - self._reclaimed_at < self.settings.reclaim_interval_s:
            return []
        self._reclaimed_at = now
        taken = self.store.reclaim(rows // GUIDED_ROWS, self.settings.lease_s)
        self.metrics.reclaimed.inc(len(taken))
        for entry in taken:
            log.warning(
                "entry %s (job %s) of %s taken over from a worker that stopped",
                entry.entry_id,
                entry.job_id,
                self.name,
            )
            self.start(entry)
        return taken

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
            states = new_states(record.id, record.config, self.model, self._init_image(record))
        except Exception as error:  # a config the engine cannot run must fail the job, not the worker
            log.exception("job %s failed to start", record.id)
            self.endings.end(record.id, entry.entry_id, Outcome.FAILED, error=error)
            return
        job = InFlightJob(record=record, entry_id=entry.entry_id, states=states)
        self.engine.admit(states)
        self.jobs[job.job_id] = job
        self.store.append_event(self._running_event(job, job.progress(), time.time()))
        self.metrics.queue_wait.observe(max(0.0, job.admitted_at - record.created_at))
        cfg = record.config
        log.info(
            "job %s started model=%s sampler=%s schedule=%s steps=%d images=%d guidance=%g attempt=%d",
            record.id,
            self.name,
            cfg.sampler,
            cfg.schedule,
            cfg.steps,
            cfg.num_images,
            cfg.guidance_scale,
            record.attempts,
        )

    def stop_jobs(self, cancelled: set[str], now: float) -> None:
        """Ends the jobs a client cancelled and those past their deadline; the rest go on."""
        for job in list(self.jobs.values()):
            if job.job_id in cancelled:
                self.endings.end(job.job_id, job.entry_id, Outcome.CANCELLED, progress=job.progress())
            elif (overdue := job.overdue(now)) is not None:
                self.endings.end(
                    job.job_id, job.entry_id, Outcome.EXPIRED, error=overdue, progress=job.progress()
                )

    def tick(self) -> None:
        """One batched step of the engine (its oldest images, up to ``max_batch`` rows), if any
        image is in flight; a step that raises fails the jobs in its batch, not the worker."""
        try:
            stats = self.engine.tick()
        except BatchFailed as failed:
            log.exception("forward of %s failed; failing the jobs in this batch", self.name)
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
    def _init_image(self, record: JobRecord) -> InitImage | None:
        """The job's init image, decoded (None without one); InitImageUnusable when it is gone."""
        cfg = record.config
        if cfg.init_image_sha256 is None:
            return None
        data = self.store.init_image(record.id)
        if data is None or hashlib.sha256(data).hexdigest() != cfg.init_image_sha256:
            raise InitImageUnusable(f"job {record.id}: its init image is missing or changed (expired?)")
        return InitImage.decode(data, self.model.info.channels, cfg.width, cfg.height)

    def _forget(self, job_id: str) -> None:
        self.engine.drop(job_id)
        self.jobs.pop(job_id, None)

    def _write_progress(self) -> None:
        now, interval = time.time(), self.settings.progress_interval_s
        due = [
            job for job in self.jobs.values() if not job.done and now - job.progress_written_at >= interval
        ]
        if due:
            progress = {job.job_id: job.progress() for job in due}
            events = [self._running_event(job, progress[job.job_id], now) for job in due]
            self.store.write_progress(progress, events)
            for job in due:
                job.progress_written_at = now

    def _running_event(self, job: InFlightJob, progress: Progress, now: float) -> JobEvent:
        """Step k of n, and every ``preview_interval_s`` a preview of image 0's x̂₀."""
        preview = None
        interval = self.settings.preview_interval_s
        x0 = job.states[0].x0
        if interval > 0 and x0 is not None and now - job.preview_written_at >= interval:
            preview = base64.b64encode(preview_png(self.model, x0)).decode("ascii")
            job.preview_written_at = now
        return JobEvent(
            type="running",
            job_id=job.job_id,
            at=now,
            step=progress.step,
            total=progress.total,
            preview_png_base64=preview,
        )
