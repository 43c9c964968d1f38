"""The worker process: a state machine around the sampling engine.

States: starting (loading the model) -> ready (idle) <-> busy (images in flight) -> stopping.
The loop is three small methods: ``poll`` (admit jobs from the stream; stop cancelled and
expired ones), ``tick`` (one batched denoising step for up to ``max_batch`` rows) and
``finish`` (encode, store the result, ACK, notify). A job is ACKed only after its result is
stored. While busy, ``poll`` costs one Redis round trip per step.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import redis
import torch

from protocol.records import CorruptJobRecord
from protocol.schema import GeneratedImage, JobError, JobRecord, JobResult, Progress, Timings, WorkerHeartbeat
from workers.images import png_base64, to_uint8
from workers.job_store import StreamEntry, WorkerJobStore
from workers.metrics import WorkerMetrics
from workers.models.loading import LoadedModel
from workers.noise_estimate import noise_estimate
from workers.sampling.engine import SamplingEngine, SamplingState, new_states, visited_timesteps
from workers.settings import WorkerSettings

log = logging.getLogger("workers.worker")

WorkerState = Literal["starting", "ready", "busy", "stopping"]


class DeadlineExceeded(Exception):
    """The job's deadline (``JobRecord.deadline_at``) passed before it finished."""


class PoisonJob(Exception):
    """The job was started ``max_deliveries`` times and never finished."""


@dataclass(eq=False)
class InFlightJob:
    record: JobRecord
    entry_id: str
    states: list[SamplingState]
    admitted_at: float = field(default_factory=time.time)
    progress_written_at: float = 0.0
    result: JobResult | None = None  # encoded once; kept until it is stored

    @property
    def job_id(self) -> str:
        return self.record.id

    @property
    def done(self) -> bool:
        return all(s.done for s in self.states)

    def progress(self) -> Progress:
        return Progress(step=min(s.step_index for s in self.states), total=self.states[0].num_steps)


class Worker:
    def __init__(
        self, settings: WorkerSettings, model: LoadedModel, client: redis.Redis, metrics: WorkerMetrics
    ) -> None:
        self.settings = settings
        self.model = model
        self.store = WorkerJobStore(client, model.info.name, settings.worker_name, settings.job_ttl_s)
        self.metrics = metrics
        self.engine = SamplingEngine(model)
        self.jobs: list[InFlightJob] = []
        self.state: WorkerState = "starting"
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._reclaimed_at = float("-inf")

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self) -> None:
        """Stop claiming new jobs; in-flight jobs run to the end (``run`` then returns)."""
        self._stop.set()

    def run(self, burst: bool = False) -> None:
        """The main loop; with ``burst`` it returns once the stream is drained and idle."""
        self.store.ensure_group()
        self.store.register_model(self.model.info)
        self.metrics.model_load.set(self.model.load_seconds)
        self.state = "ready"
        self._beat()
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        log.info(
            "worker %s ready model=%s max_batch=%d",
            self.settings.worker_name,
            self.model.info.name,
            self.settings.max_batch,
        )
        stop_deadline: float | None = None
        while True:
            stopping = self._stop.is_set()
            if stopping and not self.jobs:
                break
            if stopping:
                stop_deadline = stop_deadline or time.monotonic() + self.settings.shutdown_grace_s
                if time.monotonic() > stop_deadline:
                    # left unacknowledged, the jobs stay pending in the stream for another worker
                    log.warning("grace period over: leaving %d jobs unfinished", len(self.jobs))
                    break
            try:
                admitted = self.poll(admit=not stopping)
                if burst and not admitted and not self.jobs:
                    break
                self.tick()
                self.finish()
            except redis.RedisError as error:
                log.warning("redis error: %s; retrying in 1 s", error)
                time.sleep(1.0)
        self.state = "stopping"
        self._stop.set()
        self._finished.set()
        with contextlib.suppress(redis.RedisError):  # it expires by itself otherwise
            self.store.clear_heartbeat()
        log.info("worker %s stopped", self.settings.worker_name)

    # ------------------------------------------------------------------ the loop
    def rows_in_flight(self) -> int:
        return sum(s.rows for job in self.jobs for s in job.states if not s.done)

    def poll(self, admit: bool = True) -> int:
        """Admits jobs while there is room, and stops cancelled and expired ones.

        Abandoned jobs (their worker died) come first: they are older than anything new. Idle,
        the worker blocks on the stream; busy, ONE round trip reads new entries without
        blocking and the cancel flags of the jobs in flight, so a cancel acts within one step.
        """
        room = self.settings.max_batch - self.rows_in_flight() if admit else 0
        taken: list[StreamEntry] = []
        now = time.monotonic()
        if room > 1 and now - self._reclaimed_at >= self.settings.reclaim_interval_s:
            self._reclaimed_at = now
            taken = self.store.reclaim(room // 2, self.settings.lease_s)
            for entry in taken:
                log.warning(
                    "entry %s (job %s) taken over from a worker that stopped", entry.entry_id, entry.job_id
                )
            self.metrics.reclaimed.inc(len(taken))
            room -= 2 * len(taken)  # about two rows per job (one guided image)
        count = max(1, room // 2) if room > 0 else 0
        if self.jobs:
            fresh, cancelled = self.store.read_new_and_cancel_flags(count, [j.job_id for j in self.jobs])
            self.stop_jobs(cancelled)
        else:
            block = None if taken else self.settings.block_ms
            fresh = self.store.read_new(count, block) if count else []
        entries = taken + fresh
        for entry in entries:
            self.start(entry)
        return len(entries)

    def start(self, entry: StreamEntry) -> None:
        if entry.job_id is None:
            self._dead_letter(entry, "malformed stream entry: expected exactly one field, job = a job id")
            return
        try:
            record = self.store.start(entry.job_id)
        except CorruptJobRecord as error:
            self._dead_letter(entry, str(error))
            self._fail(entry.job_id, entry.entry_id, error)
            return
        if record is None:
            log.info("job %s skipped: finished, cancelled or expired", entry.job_id)
            self.store.ack(entry.entry_id)
            return
        self.store.publish(record.id)
        if record.attempts > self.settings.max_deliveries:
            # each start counts; a job that was started this often never finished, so its
            # workers died running it: running it again would only kill the next one
            reason = (
                f"started {record.attempts - 1} times without finishing (max_deliveries "
                f"{self.settings.max_deliveries}): each worker running it stopped; dead-lettered"
            )
            self._dead_letter(entry, reason)
            self._fail(record.id, entry.entry_id, PoisonJob(reason))
            return
        if record.deadline_at is not None and time.time() > record.deadline_at:
            waited = time.time() - record.created_at
            log.info("job %s expired in the queue after %.1f s", record.id, waited)
            self._fail(
                record.id,
                entry.entry_id,
                DeadlineExceeded(f"deadline passed before the job started ({waited:.1f} s in the queue)"),
            )
            return
        try:
            states = new_states(record.id, record.config, self.model)
        except Exception as error:  # a config the engine cannot run must fail the job, not the worker
            log.exception("job %s failed to start", record.id)
            self._fail(record.id, entry.entry_id, error)
            return
        job = InFlightJob(record=record, entry_id=entry.entry_id, states=states)
        self.jobs.append(job)
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
        for job in list(self.jobs):
            deadline = job.record.deadline_at
            if job.job_id in cancelled:
                self.jobs.remove(job)
                self.store.cancel(job.job_id, job.progress())
                self.store.ack(job.entry_id)
                self.metrics.jobs_finished.labels(status="cancelled").inc()
                log.info("job %s cancelled at step %d", job.job_id, job.progress().step)
            elif deadline is not None and now > deadline:
                self.jobs.remove(job)
                progress = job.progress()
                error = DeadlineExceeded(
                    f"deadline passed at step {progress.step} of {progress.total} "
                    f"({deadline - job.record.created_at:g} s after submission)"
                )
                self._fail(job.job_id, job.entry_id, error, progress)
                log.info("job %s expired at step %d", job.job_id, progress.step)

    def tick(self) -> None:
        """One batched step for the oldest states, up to ``max_batch`` rows."""
        batch: list[SamplingState] = []
        rows = 0
        for job in self.jobs:
            for state in job.states:
                if state.done:
                    continue
                if batch and rows + state.rows > self.settings.max_batch:
                    break
                batch.append(state)
                rows += state.rows
        self.state = "busy" if batch else "ready"
        self.metrics.busy.set(1 if batch else 0)
        self.metrics.in_flight.set(sum(len(job.states) for job in self.jobs))
        if not batch:
            return
        started = time.perf_counter()
        try:
            self.engine.step(batch)
        except Exception as error:
            log.exception("forward failed; failing the jobs in this batch")
            failed_ids = {s.job_id for s in batch}
            for job in [j for j in self.jobs if j.job_id in failed_ids]:
                self.jobs.remove(job)
                self._fail(job.job_id, job.entry_id, error)
            return
        self.metrics.step.observe(time.perf_counter() - started)
        self.metrics.batch_rows.observe(self.engine.last_batch_rows)
        self.metrics.forward.observe(self.engine.last_forward_seconds)
        self._write_progress()

    def finish(self) -> None:
        # a job leaves the list only once its result is stored: if Redis is away, the next
        # loop retries with the same (already encoded) result
        for job in [j for j in self.jobs if j.done]:
            self._complete(job)
            self.jobs.remove(job)

    # ------------------------------------------------------------------ helpers
    def _write_progress(self) -> None:
        now = time.time()
        due = {
            job.job_id: job.progress()
            for job in self.jobs
            if not job.done and now - job.progress_written_at >= self.settings.progress_interval_s
        }
        if due:
            self.store.write_progress(due)
            for job in self.jobs:
                if job.job_id in due:
                    job.progress_written_at = now

    def _complete(self, job: InFlightJob) -> None:
        if job.result is None:
            job.result = self._result(job)
        result = job.result
        written = self.store.succeed(job.job_id, result, job.progress())
        self.store.ack(job.entry_id)
        timings = result.timings
        self.metrics.inference.observe(timings.inference_ms / 1000)
        self.metrics.encode.observe(timings.encode_ms / 1000)
        self.metrics.total.observe(timings.total_ms / 1000)
        if written:
            self.metrics.jobs_finished.labels(status="succeeded").inc()
            self.metrics.images.inc(len(result.images))
        else:  # another worker (or a cancel, or the deadline) finished it first: its result stands
            self.metrics.results_discarded.inc()
        log.info(
            "job %s succeeded images=%d inference_ms=%.1f total_ms=%.1f stored=%s",
            job.job_id,
            len(result.images),
            timings.inference_ms,
            timings.total_ms,
            written,
        )

    def _result(self, job: InFlightJob) -> JobResult:
        inference_done = time.time()
        encode_started = time.perf_counter()
        cfg = job.record.config
        images = []
        for state in job.states:
            pixels = to_uint8(state.latent)
            noise = noise_estimate(pixels)
            self.metrics.noise_estimate.observe(noise)
            images.append(
                GeneratedImage(
                    index=state.index,
                    seed=state.seed,
                    class_label=cfg.class_label,
                    width=pixels.shape[1],
                    height=pixels.shape[0],
                    png_base64=png_base64(pixels),
                    noise_estimate=noise,
                )
            )
        encode_s = time.perf_counter() - encode_started
        finished = time.time()
        step_times = [t for s in job.states for t in s.step_seconds]
        inference_s = inference_done - job.admitted_at
        timings = Timings(
            queue_wait_ms=round(1000 * max(0.0, job.admitted_at - job.record.created_at), 3),
            inference_ms=round(1000 * inference_s, 3),
            step_ms_mean=round(1000 * sum(step_times) / max(1, len(step_times)), 3),
            encode_ms=round(1000 * encode_s, 3),
            total_ms=round(1000 * max(0.0, finished - job.record.created_at), 3),
        )
        config = cfg.model_copy(update={"timesteps": visited_timesteps(job.states[0].scheduler)})
        return JobResult(images=images, config=config, timings=timings, worker=self.settings.worker_name)

    def _dead_letter(self, entry: StreamEntry, reason: str) -> None:
        log.warning("entry %s (job %s) dead-lettered: %s", entry.entry_id, entry.job_id, reason)
        self.store.dead_letter(entry, reason)
        self.metrics.dead_lettered.inc()

    def _fail(self, job_id: str, entry_id: str, error: Exception, progress: Progress | None = None) -> None:
        self.store.fail(job_id, JobError(type=type(error).__name__, message=str(error)), progress)
        self.store.ack(entry_id)
        self.metrics.jobs_finished.labels(status="failed").inc()

    def _beat(self) -> None:
        self.store.heartbeat(
            WorkerHeartbeat(
                worker=self.settings.worker_name,
                model=self.model.info.name,
                state=self.state,
                in_flight=sum(len(job.states) for job in self.jobs),
                at=time.time(),
            ),
            self.settings.heartbeat_ttl_s,
        )

    def _heartbeat_loop(self) -> None:
        """Beats, and keeps the leases of the in-flight entries (the main loop may be in a long
        forward); also after a stop request, while the grace period lets jobs finish."""
        while not self._finished.wait(self.settings.heartbeat_interval_s):
            try:
                self._beat()
                self.store.refresh_leases([job.entry_id for job in list(self.jobs)])
                self.store.register_model(self.model.info)
            except redis.RedisError as error:
                log.warning("heartbeat failed: %s", error)


def resolve_device(settings: WorkerSettings) -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run on; half precision is used only on CUDA."""
    if settings.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(settings.device)
    dtype = getattr(torch, settings.dtype)
    if device.type == "cpu" and dtype != torch.float32:
        log.info("dtype %s requested on CPU: using float32", settings.dtype)
        dtype = torch.float32
    return device, dtype
