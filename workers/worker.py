"""The worker process: a guarded state machine (``workers.lifecycle``) around one sampling engine
per model it serves (``workers.served_model``).

The loop is four small methods: ``poll`` (take jobs from every model's stream while its engine
has free rows; stop cancelled and expired ones), ``start`` (an entry becomes admitted images of
its model), ``tick`` (ONE batched step of each model that has images in flight, round robin)
and ``finish`` (encode finished jobs, store them). Every job leaves through ``JobEndings.end``
(``workers.outcomes``), whatever its outcome; it is acknowledged only after its outcome is
stored. Idle, the worker blocks in one read over all its streams; busy, ``poll`` costs one Redis
round trip per loop, however many models.
"""

from __future__ import annotations

import logging
import time

import redis

from protocol.schema import WorkerState
from workers.heap_trim import HeapTrim
from workers.heartbeat import Heartbeat
from workers.job_store import StreamReader
from workers.lifecycle import Lifecycle
from workers.metrics import WorkerMetrics
from workers.models.loading import LoadedModel
from workers.served_model import ServedModel
from workers.settings import WorkerSettings

log = logging.getLogger("workers.worker")


class Worker:
    """Args:
    models: the loaded models, one per name of ``settings.models`` (at least one).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        models: list[LoadedModel],
        client: redis.Redis,
        metrics: WorkerMetrics,
    ) -> None:
        if not models:
            raise ValueError("a worker serves at least one model")
        self.settings = settings
        self.metrics = metrics
        self.served = [ServedModel(model, client, settings, metrics) for model in models]
        self.by_stream = {served.stream: served for served in self.served}
        self.reader = StreamReader(client, settings.worker_name)
        self.lifecycle = Lifecycle(settings.shutdown_grace_s)
        self.heartbeat = Heartbeat(settings, self.served, self.lifecycle)
        self.heap_trim = HeapTrim(settings.heap_trim_interval_s)
        self._first = 0  # the model that ticks first in the next loop (round robin)

    def request_stop(self) -> None:
        """Stop claiming new jobs; in-flight jobs run to the end (``run`` then returns)."""
        self.lifecycle.request_stop()

    def in_flight(self) -> bool:
        """Whether any model has a job in flight (running, or its result not yet stored)."""
        return any(served.jobs for served in self.served)

    def run(self, burst: bool = False) -> None:
        """The main loop; with ``burst`` it returns once every stream is drained and idle."""
        for served in self.served:
            served.register()
        self.lifecycle.to(WorkerState.READY)
        self.heartbeat.start()
        names = ",".join(served.name for served in self.served)
        name, max_batch = self.settings.worker_name, self.settings.max_batch
        log.info("worker %s ready models=%s max_batch=%d (each)", name, names, max_batch)
        while True:
            draining = self.lifecycle.draining()
            if draining and not self.in_flight():
                break
            if self.lifecycle.grace_over():
                # left unacknowledged, the jobs stay pending in the streams for another worker
                jobs = sum(len(served.jobs) for served in self.served)
                log.warning("grace period over: leaving %d jobs unfinished", jobs)
                break
            try:
                admitted = self.poll(admit=not draining)
                if burst and not admitted and not self.in_flight():
                    break
                self.tick()
                self.finish()
                self.trim_heap()
            except redis.RedisError as error:
                log.warning("redis error: %s; retrying in 1 s", error)
                time.sleep(1.0)
        self.lifecycle.stop()
        self.heartbeat.stop()
        log.info("worker %s stopped", name)

    # ------------------------------------------------------------------ the loop
    def poll(self, admit: bool = True) -> int:
        """Admits jobs to every model whose engine has free rows, and stops cancelled and expired
        ones; returns how many entries it took.

        Abandoned entries (their worker died) come first: they are older than anything new.
        Idle (no job in flight on any model), the worker blocks in ONE ``XREADGROUP`` over all
        its streams; busy, ONE round trip reads new entries of each stream with room, without
        blocking, and the cancel flags of every job in flight, so a cancel acts within one step.
        """
        taken = sum(len(served.reclaim()) for served in self.served) if admit else 0
        wanted = {served.stream: served.entries_wanted() for served in self.served} if admit else {}
        if self.in_flight():
            job_ids = [job_id for served in self.served for job_id in served.jobs]
            fresh, cancelled = self.reader.read_new_and_cancel_flags(wanted, job_ids)
            now = time.time()
            for served in self.served:
                served.stop_jobs(cancelled, now)
        else:
            fresh = self.reader.read_new(wanted, None if taken else self.settings.block_ms)
        for stream, entries in fresh.items():
            for entry in entries:
                self.by_stream[stream].start(entry)
        return taken + sum(len(entries) for entries in fresh.values())

    def tick(self) -> None:
        """ONE batched step of each model with images in flight (each up to ``max_batch`` rows),
        starting one model further each loop: a busy model never makes another wait more than a
        step of its own."""
        rows = sum(served.engine.rows_in_flight for served in self.served)
        self.lifecycle.settle(rows > 0)
        self.metrics.busy.set(1 if rows > 0 else 0)
        self.metrics.in_flight.set(
            sum(len(job.states) for served in self.served for job in served.jobs.values())
        )
        order = self.served[self._first :] + self.served[: self._first]
        self._first = (self._first + 1) % len(self.served)
        for served in order:
            served.tick()

    def finish(self) -> None:
        """Encodes and stores the jobs every model finished (``ServedModel.finish``)."""
        for served in self.served:
            served.finish()

    def trim_heap(self) -> None:
        """Hands freed heap back to the OS every ``heap_trim_interval_s`` (``workers.heap_trim``)."""
        trimmed = self.heap_trim.maybe_trim()
        if trimmed is not None:
            self.metrics.heap_trim.observe(trimmed.seconds)
            self.metrics.heap_trim_released.inc(trimmed.released_bytes)
